"""Management commands, the admin and the system checks, as an operator uses them.

AWS is reached only through moto (``moto_aws`` from ``test_provisioning``) or a ``Mock``
returned by patching ``django_aws_api_gateway_websockets.models.get_boto3_client``.
"""

from __future__ import annotations

import io
from datetime import timedelta
from io import StringIO
from typing import Any
from unittest.mock import patch

import pytest
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from django_aws_api_gateway_websockets.checks import check_websocket_settings
from django_aws_api_gateway_websockets.models import (
    ApiGateway,
    ApiGatewayAdditionalRoute,
    ChannelMessage,
    ConnectionRateLimit,
    WebSocketSession,
    WebSocketToken,
)
from tests.test_provisioning import (
    CERTIFICATE_ARN,
    PATCH_TARGET,
    REGION,
    client_error,
    mock_apigw_client,
    moto_aws,
)

CHECK_PREFIX = "django_aws_api_gateway_websockets."


@pytest.fixture
def aws(settings):
    settings.AWS_GATEWAY_REGION_NAME = REGION
    with moto_aws() as fake:
        yield fake


def make_gateway(**overrides: Any) -> ApiGateway:
    fields = {"api_name": "Chat", "target_base_endpoint": "https://testserver/ws/"}
    fields.update(overrides)
    return ApiGateway.objects.create(**fields)


def run(command: str, *args: Any, **options: Any) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def admin_url(model: str, view: str = "changelist", *args: Any) -> str:
    return reverse(f"admin:django_aws_api_gateway_websockets_{model}_{view}", args=args)


def page_messages(response: Any) -> list[tuple[int, str]]:
    return [(m.level, str(m)) for m in response.context["messages"]]


# ---------------------------------------------------------------------------------------------
# createApiGateway / createCustomDomain
# ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_api_gateway_command_against_moto(aws):
    gateway = make_gateway(stage_name="live")

    output = run("createApiGateway", "--pk", str(gateway.pk))

    gateway.refresh_from_db()
    assert gateway.api_created is True
    assert len(aws.raw.get_apis()["Items"]) == 1
    assert output.strip() == (
        f"Created API Gateway 'Chat': api_id={gateway.api_id}, "
        f"endpoint=https://{gateway.api_id}.execute-api.{REGION}.amazonaws.com/live, "
        "deployment=deployment1."
    )


@pytest.mark.django_db
def test_create_api_gateway_command_with_mock_client_and_keyword_pk(settings):
    settings.AWS_GATEWAY_REGION_NAME = REGION
    gateway = make_gateway()
    client = mock_apigw_client("k1")

    with patch(PATCH_TARGET, return_value=client):
        output = run("createApiGateway", pk=gateway.pk)

    client.create_api.assert_called_once()
    assert "api_id=k1" in output
    assert "deployment=dep-1" in output
    gateway.refresh_from_db()
    assert (gateway.api_id, gateway.deployment_id, gateway.api_created) == ("k1", "dep-1", True)


@pytest.mark.django_db
@pytest.mark.parametrize("command", ["createApiGateway", "createCustomDomain"])
def test_gateway_commands_require_pk(command):
    with pytest.raises(CommandError, match="--pk"):
        run(command)


@pytest.mark.django_db
@pytest.mark.parametrize("command", ["createApiGateway", "createCustomDomain"])
def test_gateway_commands_reject_unknown_or_malformed_pk(command):
    with patch(PATCH_TARGET) as get_client:
        with pytest.raises(CommandError, match="No ApiGateway with pk=424242"):
            run(command, "--pk", "424242")
        with pytest.raises(CommandError, match="invalid int value"):
            run(command, "--pk", "abc")
    get_client.assert_not_called()


@pytest.mark.django_db
def test_create_api_gateway_command_failure_gives_the_reason(settings):
    settings.AWS_GATEWAY_REGION_NAME = REGION
    gateway = make_gateway()
    client = mock_apigw_client()
    client.create_stage.side_effect = client_error(
        "AccessDeniedException", "User is not authorized"
    )

    with (
        patch(PATCH_TARGET, return_value=client),
        pytest.raises(CommandError) as excinfo,
    ):
        run("createApiGateway", pk=gateway.pk)

    message = str(excinfo.value)
    assert "create the stage" in message
    assert "AccessDeniedException: User is not authorized" in message
    gateway.refresh_from_db()
    assert gateway.api_created is False
    assert gateway.api_id == "api123"  # kept for the resumed run


@pytest.mark.django_db
def test_create_api_gateway_command_on_created_gateway_fails(api_gateway):
    with patch(PATCH_TARGET) as get_client, pytest.raises(CommandError, match="already created"):
        run("createApiGateway", pk=api_gateway.pk)
    get_client.assert_not_called()


@pytest.mark.django_db
def test_create_custom_domain_command_on_created_domain_fails(api_gateway):
    api_gateway.domain_name = "ws.example.com"
    api_gateway.custom_domain_created = True
    api_gateway.save()
    with patch(PATCH_TARGET) as get_client, pytest.raises(CommandError, match="already created"):
        run("createCustomDomain", pk=api_gateway.pk)
    get_client.assert_not_called()


@pytest.mark.django_db
def test_create_api_gateway_command_with_missing_profile_is_a_command_error(settings):
    settings.AWS_GATEWAY_REGION_NAME = REGION
    settings.AWS_IAM_PROFILE = "no-such-profile-anywhere"
    gateway = make_gateway()

    with pytest.raises(CommandError, match="no-such-profile-anywhere"):
        run("createApiGateway", pk=gateway.pk)


@pytest.mark.django_db
def test_create_custom_domain_command_against_moto(aws):
    gateway = make_gateway(domain_name="ws.example.com", certificate_arn=CERTIFICATE_ARN)
    gateway.create_gateway()

    output = run("createCustomDomain", "--pk", str(gateway.pk))

    gateway.refresh_from_db()
    assert gateway.custom_domain_created is True
    assert len(aws.raw.get_api_mappings(DomainName="ws.example.com")["Items"]) == 1
    assert "ws.example.com" in output
    assert gateway.api_gateway_domain_name in output
    assert "Z1UJRXOUMOOFQ8" in output


@pytest.mark.django_db
def test_create_custom_domain_command_before_gateway_fails_clearly(settings):
    gateway = make_gateway(domain_name="ws.example.com", certificate_arn=CERTIFICATE_ARN)
    with (
        patch(PATCH_TARGET) as get_client,
        pytest.raises(CommandError, match="before its custom domain"),
    ):
        run("createCustomDomain", pk=gateway.pk)
    get_client.assert_not_called()


# ---------------------------------------------------------------------------------------------
# cleanupWebSocketTokens / clearWebSocketSessions
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("alice", password="pw-alice-123")


def aged_token(user: Any, seconds: int, used: bool = False) -> WebSocketToken:
    token = WebSocketToken.generate_token(user, "session-key")
    WebSocketToken.objects.filter(pk=token.pk).update(
        created_at=timezone.now() - timedelta(seconds=seconds), used=used
    )
    return token


def aged_attempt(days: float, ip: str = "203.0.113.9") -> ConnectionRateLimit:
    attempt = ConnectionRateLimit.record_attempt(ip)
    ConnectionRateLimit.objects.filter(pk=attempt.pk).update(
        attempt_time=timezone.now() - timedelta(days=days)
    )
    return attempt


@pytest.mark.django_db
def test_cleanup_tokens_removes_used_and_expired_keeps_fresh_and_old_attempts_go(user):
    fresh = aged_token(user, 10)
    used = aged_token(user, 10, used=True)
    expired = aged_token(user, 301)
    recent_attempt = aged_attempt(6)
    old_attempt = aged_attempt(8)

    output = run("cleanupWebSocketTokens")

    assert list(WebSocketToken.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert not WebSocketToken.objects.filter(pk__in=[used.pk, expired.pk]).exists()
    assert list(ConnectionRateLimit.objects.values_list("pk", flat=True)) == [recent_attempt.pk]
    assert not ConnectionRateLimit.objects.filter(pk=old_attempt.pk).exists()
    assert output.strip() == "Deleted 2 used or expired token(s) and 1 rate-limit record(s)."


@pytest.mark.django_db
def test_cleanup_tokens_honours_the_age_options(user):
    token = aged_token(user, 120)
    attempt = aged_attempt(2)

    run("cleanupWebSocketTokens")
    assert WebSocketToken.objects.filter(pk=token.pk).exists()
    assert ConnectionRateLimit.objects.filter(pk=attempt.pk).exists()

    output = run("cleanupWebSocketTokens", "--token-age", "60", "--rate-limit-age", "1")
    assert not WebSocketToken.objects.filter(pk=token.pk).exists()
    assert not ConnectionRateLimit.objects.filter(pk=attempt.pk).exists()
    assert "Deleted 1 used or expired token(s) and 1 rate-limit record(s)." in output

    fresh = aged_token(user, 100)
    run("cleanupWebSocketTokens", token_age=50, rate_limit_age=7)
    assert not WebSocketToken.objects.filter(pk=fresh.pk).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args", [("--token-age", "-1"), ("--rate-limit-age", "-3"), ("--token-age", "soon")]
)
def test_cleanup_tokens_rejects_bad_arguments(user, args):
    token = aged_token(user, 400)
    with pytest.raises(CommandError):
        run("cleanupWebSocketTokens", *args)
    assert WebSocketToken.objects.filter(pk=token.pk).exists()  # nothing deleted


@pytest.mark.django_db
def test_clear_sessions_reports_how_many_it_deleted(api_gateway):
    WebSocketSession.objects.create(connection_id="a", api_gateway=api_gateway, connected=False)
    WebSocketSession.objects.create(connection_id="b", api_gateway=api_gateway, connected=False)
    WebSocketSession.objects.create(connection_id="c", api_gateway=api_gateway)

    assert run("clearWebSocketSessions").strip() == "Deleted 2 disconnected WebSocket session(s)."
    assert list(WebSocketSession.objects.values_list("connection_id", flat=True)) == ["c"]
    assert run("clearWebSocketSessions").strip() == "Deleted 0 disconnected WebSocket session(s)."


# ---------------------------------------------------------------------------------------------
# Admin
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def populated(api_gateway, user):
    # Already deployed: saving it makes no AWS call.
    route = ApiGatewayAdditionalRoute.objects.create(
        api_gateway=api_gateway, name="Chat message", route_key="chat_message", deployed=True
    )
    session = WebSocketSession.objects.create(
        connection_id="conn-alice", channel_name="lobby", user=user, api_gateway=api_gateway
    )
    token = WebSocketToken.generate_token(user, "session-key")
    attempt = ConnectionRateLimit.record_attempt("198.51.100.7", user=user, successful=True)
    ChannelMessage.objects.create(channel_name="lobby", seq=1, payload='{"type":"note"}')
    return {"route": route, "session": session, "token": token, "attempt": attempt}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model",
    [
        "apigateway",
        "apigatewayadditionalroute",
        "websocketsession",
        "websockettoken",
        "connectionratelimit",
        "channelmessage",
    ],
)
def test_admin_changelists_load(admin_client, populated, model):
    response = admin_client.get(admin_url(model))
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1


@pytest.mark.django_db
def test_admin_gateway_and_route_forms_load(admin_client, populated, api_gateway):
    assert admin_client.get(admin_url("apigateway", "add")).status_code == 200
    response = admin_client.get(admin_url("apigateway", "change", api_gateway.pk))
    assert response.status_code == 200
    assert response.context["original"] == api_gateway
    assert admin_client.get(admin_url("apigatewayadditionalroute", "add")).status_code == 200
    change = admin_url("apigatewayadditionalroute", "change", populated["route"].pk)
    assert admin_client.get(change).status_code == 200


@pytest.mark.django_db
def test_additional_routes_filter_by_gateway_and_gateways_list_their_domain(
    admin_client, api_gateway
):
    """The original's admin filters routes by their gateway; keep that lookup working."""
    other = make_gateway(api_name="Support desk", domain_name="help.example.com")
    ours = ApiGatewayAdditionalRoute.objects.create(
        api_gateway=api_gateway, name="Chat message", route_key="chat_message", deployed=True
    )
    ApiGatewayAdditionalRoute.objects.create(api_gateway=other, name="History", route_key="h")

    response = admin_client.get(
        admin_url("apigatewayadditionalroute"), {"api_gateway__id__exact": api_gateway.pk}
    )
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [ours]

    gateways = admin_client.get(admin_url("apigateway")).content.decode()
    assert "help.example.com" in gateways


def changelist_results(admin_client: Any, model: str, query: str) -> list[Any]:
    response = admin_client.get(admin_url(model), {"q": query})
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


@pytest.mark.django_db
def test_additional_route_admin_search(admin_client, api_gateway):
    other = make_gateway(api_name="Support desk", api_id="zzz", api_created=True)
    chat = ApiGatewayAdditionalRoute.objects.create(
        api_gateway=api_gateway, name="Chat message", route_key="chat_message", deployed=True
    )
    history = ApiGatewayAdditionalRoute.objects.create(
        api_gateway=other, name="History", route_key="fetch_history", deployed=True
    )

    assert changelist_results(admin_client, "apigatewayadditionalroute", "chat_mess") == [chat]
    assert changelist_results(admin_client, "apigatewayadditionalroute", "History") == [history]
    assert changelist_results(admin_client, "apigatewayadditionalroute", "Support") == [history]
    assert changelist_results(admin_client, "apigatewayadditionalroute", "nothing") == []


@pytest.mark.django_db
def test_session_admin_search_by_connection_channel_and_username(admin_client, api_gateway, user):
    bob = get_user_model().objects.create_user("bob", password="pw-bob-12345")
    alice_session = WebSocketSession.objects.create(
        connection_id="AbCdEf123=", channel_name="lobby", user=user, api_gateway=api_gateway
    )
    bob_session = WebSocketSession.objects.create(
        connection_id="ZyXwVu987=", channel_name="kitchen", user=bob, api_gateway=api_gateway
    )

    assert changelist_results(admin_client, "websocketsession", "AbCdEf123=") == [alice_session]
    assert changelist_results(admin_client, "websocketsession", "kitchen") == [bob_session]
    assert changelist_results(admin_client, "websocketsession", "alice") == [alice_session]
    assert changelist_results(admin_client, "websocketsession", "bob") == [bob_session]


@pytest.mark.django_db
def test_token_and_rate_limit_admin_search_by_user(admin_client, populated):
    assert changelist_results(admin_client, "websockettoken", "alice") == [populated["token"]]
    assert changelist_results(admin_client, "websockettoken", "nobody") == []
    assert changelist_results(admin_client, "connectionratelimit", "198.51.100") == [
        populated["attempt"]
    ]
    assert changelist_results(admin_client, "connectionratelimit", "alice") == [
        populated["attempt"]
    ]


@pytest.mark.django_db
def test_token_is_masked_in_the_admin(admin_client, populated):
    token = populated["token"].token

    changelist = admin_client.get(admin_url("websockettoken")).content.decode()
    detail = admin_client.get(admin_url("websockettoken", "change", populated["token"].pk))

    assert f"{token[:6]}…{token[-2:]}" in changelist
    assert token not in changelist
    assert detail.status_code == 200
    assert token not in detail.content.decode()
    assert token[:20] not in changelist + detail.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["websockettoken", "connectionratelimit"])
def test_tokens_and_rate_limits_are_read_only(admin_client, populated, model):
    assert admin_client.get(admin_url(model, "add")).status_code == 403
    obj = populated["token"] if model == "websockettoken" else populated["attempt"]
    response = admin_client.post(admin_url(model, "change", obj.pk), {"used": "on"})
    assert response.status_code == 403
    changelist = admin_client.get(admin_url(model)).content.decode()
    assert admin_url(model, "add") not in changelist


def post_action(admin_client: Any, action: str, *gateways: ApiGateway) -> Any:
    return admin_client.post(
        admin_url("apigateway"),
        {"action": action, "_selected_action": [g.pk for g in gateways]},
        follow=True,
    )


@pytest.mark.django_db
def test_create_gateway_action_reports_real_success(admin_client, aws):
    gateway = make_gateway()

    response = post_action(admin_client, "create_api_gateway", gateway)

    assert response.status_code == 200
    assert page_messages(response) == [(messages.SUCCESS, "Chat: API Gateway created.")]
    gateway.refresh_from_db()
    assert gateway.api_created is True
    assert len(aws.raw.get_apis()["Items"]) == 1


@pytest.mark.django_db
def test_create_gateway_action_reports_each_real_failure(admin_client, settings):
    settings.AWS_GATEWAY_REGION_NAME = REGION
    good = make_gateway(api_name="Good")
    bad = make_gateway(api_name="Bad")
    client = mock_apigw_client()

    def create_stage(**kwargs: Any) -> dict[str, Any]:
        if client.create_api.call_args.kwargs["Name"] == "Bad":
            raise client_error("LimitExceededException", "Too many stages")
        return {"StageName": kwargs["StageName"]}

    client.create_stage.side_effect = create_stage

    with patch(PATCH_TARGET, return_value=client):
        response = post_action(admin_client, "create_api_gateway", good, bad)

    assert response.status_code == 200
    reported = dict((text.split(":", 1)[0], level) for level, text in page_messages(response))
    assert reported["Good"] == messages.SUCCESS
    [error] = [text for level, text in page_messages(response) if level == messages.ERROR]
    assert "'Bad'" in error
    assert "LimitExceededException: Too many stages" in error
    good.refresh_from_db()
    bad.refresh_from_db()
    assert (good.api_created, bad.api_created) == (True, False)


@pytest.mark.django_db
def test_create_gateway_action_with_missing_profile_reports_an_error(admin_client, settings):
    settings.AWS_GATEWAY_REGION_NAME = REGION
    settings.AWS_IAM_PROFILE = "no-such-profile-anywhere"
    gateway = make_gateway()

    response = post_action(admin_client, "create_api_gateway", gateway)

    assert response.status_code == 200
    [(level, text)] = page_messages(response)
    assert level == messages.ERROR
    assert "no-such-profile-anywhere" in text


@pytest.mark.django_db
def test_create_custom_domain_action_reports_success_and_failure(admin_client, aws):
    ready = make_gateway(
        api_name="Ready", domain_name="ws.example.com", certificate_arn=CERTIFICATE_ARN
    )
    ready.create_gateway()
    not_created = make_gateway(
        api_name="Later", domain_name="ws2.example.com", certificate_arn=CERTIFICATE_ARN
    )

    response = post_action(admin_client, "create_custom_domain", ready, not_created)

    found = page_messages(response)
    assert (messages.SUCCESS, "Ready: custom domain created.") in found
    errors = [text for level, text in found if level == messages.ERROR]
    assert len(errors) == 1
    assert "before its custom domain" in errors[0]
    ready.refresh_from_db()
    not_created.refresh_from_db()
    assert (ready.custom_domain_created, not_created.custom_domain_created) == (True, False)


@pytest.mark.django_db
def test_gateway_actions_carry_the_original_names_and_labels(admin_client):
    make_gateway()  # the admin shows its actions only when there are rows
    changelist = admin_client.get(admin_url("apigateway"))

    choices = dict(changelist.context["action_form"].fields["action"].choices)
    assert choices["create_api_gateway"] == "Create API Gateway"
    assert choices["create_custom_domain"] == "Create Custom Domain"
    assert "sync_action" in choices  # our own action is kept
    page = changelist.content.decode()
    assert '<option value="create_api_gateway">Create API Gateway</option>' in page
    assert '<option value="create_custom_domain">Create Custom Domain</option>' in page


@pytest.mark.django_db
def test_actions_on_rows_already_created_report_it_and_call_nothing(admin_client, api_gateway):
    api_gateway.custom_domain_created = True
    api_gateway.save()

    with patch(PATCH_TARGET) as get_client:
        created = post_action(admin_client, "create_api_gateway", api_gateway)
        domain = post_action(admin_client, "create_custom_domain", api_gateway)

    get_client.assert_not_called()
    assert page_messages(created) == [
        (messages.INFO, "Test API: API Gateway already created; nothing to do.")
    ]
    assert page_messages(domain) == [
        (messages.INFO, "Test API: custom domain already created; nothing to do.")
    ]


@pytest.mark.django_db
def test_actions_work_as_plain_functions_like_the_originals(rf, settings):
    """The original's actions are module functions; code may call them with no ModelAdmin."""
    from django.contrib.messages import get_messages
    from django.contrib.messages.storage.fallback import FallbackStorage

    from django_aws_api_gateway_websockets.admin import create_api_gateway, create_custom_domain

    settings.AWS_GATEWAY_REGION_NAME = REGION
    request = rf.post("/admin/")
    request.session = {}
    request._messages = FallbackStorage(request)
    gateway = make_gateway()

    with patch(PATCH_TARGET, return_value=mock_apigw_client()):
        create_api_gateway(None, request, ApiGateway.objects.filter(pk=gateway.pk))
    create_custom_domain(None, request, [])  # nothing selected: nothing said

    assert [(m.level, str(m)) for m in get_messages(request)] == [
        (messages.SUCCESS, "Chat: API Gateway created.")
    ]
    assert ApiGateway.objects.get(pk=gateway.pk).api_created is True


@pytest.mark.django_db
def test_additional_routes_are_edited_inline_on_the_gateway_page(admin_client):
    from django.contrib.admin import TabularInline
    from django.contrib.admin.sites import site

    from django_aws_api_gateway_websockets.admin import ApiGatewayAdditionalRouteInline

    assert issubclass(ApiGatewayAdditionalRouteInline, TabularInline)
    assert ApiGatewayAdditionalRouteInline.model is ApiGatewayAdditionalRoute
    assert ApiGatewayAdditionalRouteInline in site._registry[ApiGateway].inlines
    gateway = make_gateway()  # not created in AWS: saving routes makes no AWS call
    ApiGatewayAdditionalRoute.objects.create(
        api_gateway=gateway, name="History", route_key="fetch_history"
    )
    url = admin_url("apigateway", "change", gateway.pk)

    page = admin_client.get(url)
    [formset] = [f.formset for f in page.context["inline_admin_formsets"]]
    assert [form.instance.route_key for form in formset.forms] == ["fetch_history"]

    form = page.context["adminform"].form
    data = {name: form.initial.get(name, "") for name in form.fields}
    data.update(
        tags="{}",
        **{
            "additional_routes-TOTAL_FORMS": "2",
            "additional_routes-INITIAL_FORMS": "1",
            "additional_routes-MIN_NUM_FORMS": "0",
            "additional_routes-MAX_NUM_FORMS": "1000",
            "additional_routes-0-id": str(gateway.additional_routes.get().pk),
            "additional_routes-0-api_gateway": str(gateway.pk),
            "additional_routes-0-name": "History",
            "additional_routes-0-route_key": "fetch_history",
            "additional_routes-0-integration_url": "",
            "additional_routes-1-api_gateway": str(gateway.pk),
            "additional_routes-1-name": "Typing",
            "additional_routes-1-route_key": "typing",
            "additional_routes-1-integration_url": "https://testserver/ws/typing",
        },
    )
    with patch(PATCH_TARGET) as get_client:
        response = admin_client.post(url, data, follow=True)

    assert response.status_code == 200
    assert all(level != messages.ERROR for level, _ in page_messages(response))
    get_client.assert_not_called()
    assert sorted(gateway.additional_routes.values_list("route_key", "name")) == [
        ("fetch_history", "History"),
        ("typing", "Typing"),
    ]


@pytest.mark.django_db
def test_route_admin_add_creates_the_route_in_aws(admin_client, aws):
    gateway = make_gateway()
    gateway.create_gateway()

    response = admin_client.post(
        admin_url("apigatewayadditionalroute", "add"),
        {"api_gateway": gateway.pk, "name": "History", "route_key": "fetch_history"},
        follow=True,
    )

    assert response.status_code == 200
    assert all(level != messages.ERROR for level, _ in page_messages(response))
    route = ApiGatewayAdditionalRoute.objects.get(route_key="fetch_history")
    assert route.deployed is True
    routes = {r["RouteKey"] for r in aws.raw.get_routes(ApiId=gateway.api_id)["Items"]}
    assert "fetch_history" in routes
    assert ApiGateway.objects.get(pk=gateway.pk).deployment_id == "deployment2"


@pytest.mark.django_db
def test_route_admin_add_reports_an_aws_failure(admin_client, api_gateway):
    client = mock_apigw_client()
    client.create_integration.side_effect = client_error("BadRequestException", "Invalid URI")

    with patch(PATCH_TARGET, return_value=client):
        response = admin_client.post(
            admin_url("apigatewayadditionalroute", "add"),
            {"api_gateway": api_gateway.pk, "name": "History", "route_key": "fetch_history"},
            follow=True,
        )

    assert response.status_code == 200
    errors = [text for level, text in page_messages(response) if level == messages.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith("Saved, but not created in AWS")
    assert "BadRequestException: Invalid URI" in errors[0]
    assert ApiGatewayAdditionalRoute.objects.get(route_key="fetch_history").deployed is False


# ---------------------------------------------------------------------------------------------
# System checks
# ---------------------------------------------------------------------------------------------


def our_checks() -> dict[str, Any]:
    found = [m for m in run_checks() if (m.id or "").startswith(CHECK_PREFIX)]
    by_id = {m.id.removeprefix(CHECK_PREFIX): m for m in found}
    assert len(by_id) == len(found), "each problem is reported once"
    return by_id


@pytest.fixture
def clean_settings(settings):
    settings.AWS_GATEWAY_REGION_NAME = REGION
    settings.AWS_REGION_NAME = ""
    settings.AWS_IAM_PROFILE = ""
    settings.AWS_ACCESS_KEY_ID = ""
    settings.AWS_SECRET_ACCESS_KEY = ""
    settings.WEBSOCKETS = {}
    return settings


def test_checks_are_silent_for_a_good_configuration(clean_settings):
    assert our_checks() == {}
    clean_settings.WEBSOCKETS = {
        "token_expiry_seconds": 30,
        "send_concurrency": 4,
        "allowed_origins": ["https://example.com", "http://localhost:8000"],
    }
    clean_settings.AWS_ACCESS_KEY_ID = "AKIAEXAMPLE"
    clean_settings.AWS_SECRET_ACCESS_KEY = "secret"
    assert our_checks() == {}
    assert check_websocket_settings() == []


def test_w001_no_region(clean_settings):
    clean_settings.AWS_GATEWAY_REGION_NAME = ""
    found = our_checks()
    assert set(found) == {"W001"}
    assert "AWS_GATEWAY_REGION_NAME" in found["W001"].hint
    assert "region" in found["W001"].msg

    clean_settings.AWS_REGION_NAME = "eu-west-1"  # the fallback is enough
    assert our_checks() == {}


@pytest.mark.parametrize(
    ("key", "secret"), [("AKIAEXAMPLE", ""), ("", "secret")], ids=["key-only", "secret-only"]
)
def test_e001_key_without_secret(clean_settings, key, secret):
    clean_settings.AWS_ACCESS_KEY_ID = key
    clean_settings.AWS_SECRET_ACCESS_KEY = secret
    found = our_checks()
    assert set(found) == {"E001"}
    assert found["E001"].is_serious()
    assert "AWS_ACCESS_KEY_ID" in found["E001"].msg


def test_w002_profile_and_keys(clean_settings):
    clean_settings.AWS_IAM_PROFILE = "deploy"
    clean_settings.AWS_ACCESS_KEY_ID = "AKIAEXAMPLE"
    clean_settings.AWS_SECRET_ACCESS_KEY = "secret"
    found = our_checks()
    assert set(found) == {"W002"}
    assert "profile is used" in found["W002"].msg

    clean_settings.AWS_ACCESS_KEY_ID = ""
    clean_settings.AWS_SECRET_ACCESS_KEY = ""
    assert our_checks() == {}


@pytest.mark.parametrize("value", [["token_expiry_seconds"], "token_expiry_seconds=5"])
def test_e002_websockets_not_a_dict(clean_settings, value):
    clean_settings.WEBSOCKETS = value
    found = our_checks()
    assert set(found) == {"E002"}
    assert found["E002"].is_serious()


def test_w003_unknown_websockets_key(clean_settings):
    clean_settings.WEBSOCKETS = {"token_expiry": 30, "token_expiry_seconds": 30}
    found = our_checks()
    assert set(found) == {"W003"}
    assert "token_expiry" in found["W003"].msg
    assert "token_expiry_seconds" in found["W003"].hint


def test_w004_snapstart_rehearsal_with_sessions_in_a_cache(clean_settings):
    clean_settings.WEBSOCKETS = {"snapstart_rehearsal": True}
    clean_settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    found = our_checks()
    assert set(found) == {"W004"}
    assert "cached_db" in found["W004"].msg

    clean_settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    assert our_checks() == {}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("token_expiry_seconds", 0),
        ("token_rate_limit_per_minute", -5),
        ("rate_limit_max_attempts", "20"),
        ("rate_limit_window_minutes", True),
        ("send_concurrency", 2.5),
        ("max_message_bytes", 0),
        ("max_message_bytes", "1MB"),
    ],
)
def test_e003_non_positive_integer_setting(clean_settings, key, value):
    clean_settings.WEBSOCKETS = {key: value}
    found = our_checks()
    assert set(found) == {"E003"}
    assert key in found["E003"].msg
    assert repr(value) in found["E003"].msg


@pytest.mark.parametrize(
    "origins", ["https://example.com", ["example.com"], ["https://ok.example", 7]]
)
def test_e004_bad_allowed_origins(clean_settings, origins):
    clean_settings.WEBSOCKETS = {"allowed_origins": origins}
    found = our_checks()
    assert set(found) == {"E004"}
    assert "allowed_origins" in found["E004"].msg


@pytest.mark.parametrize("value", ["false", "yes", None])
def test_e007_bad_token_binding(clean_settings, value):
    clean_settings.WEBSOCKETS = {"token_bound_to_session": value}
    found = our_checks()
    assert set(found) == {"E007"}
    assert repr(value) in found["E007"].msg


@pytest.mark.parametrize("value", [True, False, "auto"])
def test_token_bindings_that_are_fine(clean_settings, value):
    clean_settings.WEBSOCKETS = {"token_bound_to_session": value}
    assert our_checks() == {}


def test_several_problems_are_all_reported(clean_settings):
    clean_settings.AWS_GATEWAY_REGION_NAME = ""
    clean_settings.AWS_ACCESS_KEY_ID = "AKIAEXAMPLE"
    clean_settings.WEBSOCKETS = {"bogus": 1, "send_concurrency": 0}
    assert set(our_checks()) == {"W001", "E001", "W003", "E003"}


@pytest.mark.django_db
def test_clear_sessions_removes_rows_older_than_the_two_hour_connection_limit():
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from django_aws_api_gateway_websockets.models import WebSocketSession

    WebSocketSession.objects.create(connection_id="fresh", connected=True)
    stale = WebSocketSession.objects.create(connection_id="missed-disconnect", connected=True)
    WebSocketSession.objects.filter(pk=stale.pk).update(
        created_on=timezone.now() - timedelta(hours=3)
    )
    call_command("clearWebSocketSessions", stdout=io.StringIO())
    assert list(WebSocketSession.objects.values_list("connection_id", flat=True)) == ["fresh"]


@pytest.mark.parametrize("transport", ["http", "", None])
def test_e005_unknown_fanout_transport(clean_settings, transport):
    clean_settings.WEBSOCKETS = {"fanout_transport": transport}
    assert set(our_checks()) == {"E005"}


@pytest.mark.parametrize("batch", [-1, "100", True, 1.5])
def test_e006_bad_fanout_batch(clean_settings, batch):
    clean_settings.WEBSOCKETS = {"fanout_invocation_batch": batch}
    assert set(our_checks()) == {"E006"}


def test_fanout_settings_accepted(clean_settings):
    clean_settings.WEBSOCKETS = {
        "fanout_transport": "boto3",
        "fanout_invocation_batch": 0,
        "http_concurrency": 8,
    }
    assert our_checks() == {}
