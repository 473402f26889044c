"""Admin for every model: gateways with provisioning actions, operational tables read-only."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import (
    ApiGateway,
    ApiGatewayAdditionalRoute,
    ChannelMessage,
    CleanupRun,
    ConnectionRateLimit,
    WebSocketSession,
    WebSocketToken,
)
from .provisioning import GatewayProvisioningError
from .sync import sync_gateway


def user_lookup() -> str:
    """``user__<USERNAME_FIELD>``: searching by user works with custom user models too."""
    from django.contrib.auth import get_user_model

    return f"user__{get_user_model().USERNAME_FIELD}"


def _run_for_each(
    request: HttpRequest,
    queryset: Iterable[ApiGateway],
    operation: Callable[[ApiGateway], None],
    already_done: Callable[[ApiGateway], bool],
    what: str,
) -> None:
    """Run ``operation`` on each gateway and report each real success or failure; a row
    already done is reported as such (the operation would do nothing).

    Messages go through ``django.contrib.messages`` directly, not the ModelAdmin: the
    original's actions could be called as plain functions (``modeladmin`` None).
    """
    for gateway in queryset:
        if already_done(gateway):
            text = f"{gateway.api_name}: {what} already created; nothing to do."
            messages.add_message(request, messages.INFO, text)
            continue
        try:
            operation(gateway)
        except GatewayProvisioningError as error:
            messages.add_message(request, messages.ERROR, str(error))
        else:
            messages.add_message(request, messages.SUCCESS, f"{gateway.api_name}: {what} created.")


# Module-level actions with the original package's names and labels: the changelist's
# ``action`` value is the function name, so forms and tests written for it keep working.
@admin.action(description="Create API Gateway")
def create_api_gateway(
    modeladmin: admin.ModelAdmin | None, request: HttpRequest, queryset: Iterable[ApiGateway]
) -> None:
    _run_for_each(
        request,
        queryset,
        lambda gateway: gateway.create_gateway(),
        lambda gateway: gateway.api_created,
        "API Gateway",
    )


@admin.action(description="Create Custom Domain")
def create_custom_domain(
    modeladmin: admin.ModelAdmin | None, request: HttpRequest, queryset: Iterable[ApiGateway]
) -> None:
    _run_for_each(
        request,
        queryset,
        lambda gateway: gateway.create_custom_domain(),
        lambda gateway: gateway.custom_domain_created,
        "custom domain",
    )


class ApiGatewayAdditionalRouteInline(admin.TabularInline):
    """The gateway's additional routes, edited on the gateway's page."""

    model = ApiGatewayAdditionalRoute
    extra = 0
    fields = ("name", "route_key", "integration_url", "deployed")
    readonly_fields = ("deployed",)


@admin.register(ApiGateway)
class ApiGatewayAdmin(admin.ModelAdmin):
    list_display = (
        "api_name",
        "domain_name",
        "api_id",
        "stage_name",
        "api_created",
        "custom_domain_created",
        "updated_on",
    )
    list_filter = ("api_created", "custom_domain_created")
    search_fields = ("api_name", "api_id", "domain_name")
    readonly_fields = (
        "api_id",
        "api_endpoint",
        "api_gateway_domain_name",
        "api_mapping_id",
        "deployment_id",
        "api_created",
        "custom_domain_created",
        "created_on",
        "updated_on",
    )
    actions = (create_api_gateway, create_custom_domain, "sync_action")
    inlines = (ApiGatewayAdditionalRouteInline,)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        try:
            super().save_formset(request, form, formset, change)
        except GatewayProvisioningError as error:
            self.message_user(
                request, f"Routes saved, but not created in AWS: {error}", level=messages.ERROR
            )

    @admin.action(description="Sync routes and integrations with AWS (and redeploy)")
    def sync_action(self, request: HttpRequest, queryset: QuerySet[ApiGateway]) -> None:
        for gateway in queryset:
            try:
                changes = sync_gateway(gateway)
            except GatewayProvisioningError as error:
                self.message_user(request, str(error), level=messages.ERROR)
                continue
            summary = "; ".join(str(change) for change in changes) or "already in sync"
            self.message_user(request, f"{gateway.api_name}: {summary}", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        targets = {"target_base_endpoint", "lambda_function_arn", "route_key"}
        if change and obj.api_created and targets & set(form.changed_data):
            self.message_user(
                request,
                f"{obj.api_name}: AWS still has the old targets. Use the action "
                "'Sync routes and integrations with AWS' to apply the change.",
                messages.WARNING,
            )


@admin.register(ApiGatewayAdditionalRoute)
class ApiGatewayAdditionalRouteAdmin(admin.ModelAdmin):
    list_select_related = ("api_gateway",)
    list_display = ("route_key", "name", "api_gateway", "deployed")
    list_filter = ("deployed", "api_gateway")
    search_fields = ("name", "route_key", "api_gateway__api_name")
    readonly_fields = ("deployed",)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        try:
            super().save_model(request, obj, form, change)
        except GatewayProvisioningError as error:
            self.message_user(
                request, f"Saved, but not created in AWS: {error}", level=messages.ERROR
            )
            return
        if change and obj.deployed and {"route_key", "integration_url"} & set(form.changed_data):
            self.message_user(
                request,
                f"AWS still has the old route. Sync '{obj.api_gateway}' (gateway action "
                "'Sync routes and integrations with AWS') to apply the change.",
                messages.WARNING,
            )


@admin.register(WebSocketSession)
class WebSocketSessionAdmin(admin.ModelAdmin):
    list_display = (
        "connection_id",
        "channel_name",
        "user",
        "connected",
        "request_count",
        "created_on",
    )
    list_filter = ("connected", "api_gateway")
    search_fields = ("connection_id", "channel_name")

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return (*self.search_fields, user_lookup())

    list_select_related = ("user",)
    raw_id_fields = ("user",)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Operational records: inspect and delete, never hand-edit."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebSocketToken)
class WebSocketTokenAdmin(ReadOnlyAdmin):
    list_display = ("token_preview", "user", "origin", "created_at", "used")
    list_filter = ("used",)

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return (user_lookup(),)

    fields = ("token_preview", "user", "origin", "created_at", "used")
    readonly_fields = fields

    @admin.display(description="Token")
    def token_preview(self, obj: WebSocketToken) -> str:
        return f"{obj.token[:6]}…{obj.token[-2:]}" if obj.token else ""


@admin.register(ConnectionRateLimit)
class ConnectionRateLimitAdmin(ReadOnlyAdmin):
    list_display = ("ip_address", "user", "attempt_time", "successful")
    list_filter = ("successful",)
    search_fields = ("ip_address",)

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return (*self.search_fields, user_lookup())


@admin.register(CleanupRun)
class CleanupRunAdmin(ReadOnlyAdmin):
    list_display = ("command", "last_run", "last_output")


@admin.register(ChannelMessage)
class ChannelMessageAdmin(ReadOnlyAdmin):
    """The replay log: what each channel broadcast, by seq (trimmed by the clean-up)."""

    list_display = ("channel_name", "seq", "created_on")
    search_fields = ("channel_name",)
    ordering = ("channel_name", "-seq")
    fields = ("channel_name", "seq", "created_on", "payload")
    readonly_fields = fields
