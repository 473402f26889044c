"""A project written against the original package's documentation, run against this library.

One test per documented promise of django-aws-api-gateway-websockets (its README and Read the
Docs pages), in our words. Where this library deliberately differs, the test asserts our
behaviour and docs/migrating.md says why.
"""

from __future__ import annotations

import pytest
from django.db import connection, migrations, models
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder

APP = "django_aws_api_gateway_websockets"

# The original package's migrations after its 0001_initial (names are facts: Django records them).
ORIGINAL_MIGRATIONS = [
    "0002_rename_author_websocketsession_user",
    "0003_auto_20220706_1018",
    "0004_auto_20221208_1227",
    "0005_apigatewayadditionalroute_deployed",
    "0006_auto_20221215_0847",
    "0007_connectionratelimit_websockettoken",
    "0008_remove_websockettoken_websocket_t_created_c55db3_idx_and_more",
    "0009_alter_connectionratelimit_table_and_more",
]


def _shape_like_original(executor: MigrationExecutor) -> None:
    """Leave the tables as the original's migrations left them: same table names, without the
    columns this library added, with its narrower and nullable columns, and its migration
    history recorded (its 0001_initial shares our first migration's name)."""
    executor.migrate([(APP, "0001_initial")])
    state = executor.loader.project_state((APP, "0001_initial"))
    Gateway = state.apps.get_model(APP, "ApiGateway")
    Gateway.objects.create(api_name="Legacy", target_base_endpoint="https://example.com/ws/")
    legacy = [
        migrations.AlterField(
            "apigateway", "target_base_endpoint", models.CharField(max_length=200, null=True)
        ),
        migrations.AlterField("apigateway", "stage_name", models.CharField(max_length=63)),
        migrations.AlterField("apigatewayadditionalroute", "name", models.CharField(max_length=63)),
        # Narrower than our TextField: on SQLite its widening rebuilds the table, which must
        # not meet the NULLs of target_base_endpoint.
        migrations.AlterField("apigateway", "api_description", models.CharField(max_length=255)),
        # What the original's later releases (0012-0014) add: NOT NULL, no database default,
        # unknown to our models, so every INSERT of ours would fail.
        migrations.AddField(
            "websocketsession", "auth_hash", models.CharField(max_length=64, default="")
        ),
        migrations.RemoveField("apigateway", "lambda_function_arn"),
        migrations.RemoveField("apigateway", "management_endpoint_url"),
    ]
    with connection.schema_editor() as editor:
        for operation in legacy:
            before = state.clone()
            operation.state_forwards(APP, state)
            operation.database_forwards(APP, editor, before, state)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Gateway._meta.db_table} SET target_base_endpoint = NULL")
    recorder = MigrationRecorder(connection)
    for name in ORIGINAL_MIGRATIONS:
        recorder.record_applied(APP, name)


@pytest.mark.django_db(transaction=True)
def test_migrate_upgrades_a_database_the_original_package_created():
    """Upgrade path: a project that ran the original's migrations installs this library and
    runs ``migrate``; its gateways must load and new rows must fit."""
    from django_aws_api_gateway_websockets.models import ApiGateway, ApiGatewayAdditionalRoute

    executor = MigrationExecutor(connection)
    executor.migrate([(APP, None)])
    try:
        _shape_like_original(MigrationExecutor(connection))
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

        gateway = ApiGateway.objects.get(api_name="Legacy")
        assert gateway.target_base_endpoint == ""
        assert gateway.lambda_function_arn == ""
        gateway.stage_name = "s" * 128
        gateway.save(update_fields=["stage_name"])
        route = ApiGatewayAdditionalRoute.objects.create(
            api_gateway=gateway, name="n" * 128, route_key="chat"
        )
        assert ApiGatewayAdditionalRoute.objects.get(pk=route.pk).name == "n" * 128
        gateway.api_description = "d" * 1000
        gateway.save(update_fields=["api_description"])
        from django_aws_api_gateway_websockets.models import WebSocketSession

        WebSocketSession.objects.create(connection_id="after-upgrade", api_gateway=gateway)
        with connection.cursor() as cursor:
            columns = {
                info.name: info
                for info in connection.introspection.get_table_description(
                    cursor, ApiGateway._meta.db_table
                )
            }
        assert not columns["target_base_endpoint"].null_ok
    finally:
        MigrationRecorder(connection).migration_qs.filter(
            app=APP, name__in=ORIGINAL_MIGRATIONS
        ).delete()


# --- A project's own code, as the original's documentation writes it -------------------------

import json  # noqa: E402
from datetime import timedelta  # noqa: E402
from io import StringIO  # noqa: E402

from django.contrib.auth import get_user_model  # noqa: E402
from django.core import mail  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils import timezone  # noqa: E402

from django_aws_api_gateway_websockets.models import (  # noqa: E402
    ApiGateway,
    ConnectionRateLimit,
    WebSocketSession,
    WebSocketToken,
)
from django_aws_api_gateway_websockets.views import WebSocketTokenView, WebSocketView  # noqa: E402
from tests.seed.headers import api_gateway_connect_headers, api_gateway_headers  # noqa: E402


class PublicWebSocketView(WebSocketView):
    USE_WS_TOKEN = False

    def default(self, request, *args, **kwargs):
        return JsonResponse({"ok": True})

    def explode(self, request, *args, **kwargs):
        raise RuntimeError("handler bug")


class ListedHandlersView(WebSocketView):
    USE_WS_TOKEN = False
    ALLOWED_HANDLERS = {"default", "send_message"}

    def default(self, request, *args, **kwargs):
        return JsonResponse({"handler": "default"})

    def send_message(self, request, *args, **kwargs):
        return JsonResponse({"handler": "send_message"})

    def fetch_history(self, request, *args, **kwargs):
        return JsonResponse({"handler": "fetch_history"})


class PinnedGatewayView(PublicWebSocketView):
    aws_api_gateway_id = "abc123"


urlpatterns = [
    path("ws/<slug:route>", PublicWebSocketView.as_view(), name="example_websocket"),
    path("listed/<slug:route>", ListedHandlersView.as_view()),
    path("pinned/<slug:route>", PinnedGatewayView.as_view()),
    path("api/ws-token/", WebSocketTokenView.as_view(), name="websocket_token"),
]
compat_urls = pytest.mark.urls(__name__)


def _connect(client, prefix="/ws", channel="general", api_id="abc123", connection_id="c-1"):
    return client.post(
        f"{prefix}/connect?channel={channel}",
        data="",
        content_type="application/json",
        **api_gateway_connect_headers(api_id=api_id, connection_id=connection_id),
    )


def _send(client, body, prefix="/ws", route="default", api_id="abc123", connection_id="c-1"):
    return client.post(
        f"{prefix}/{route}",
        data=json.dumps(body),
        content_type="application/json",
        **api_gateway_headers(api_id=api_id, connection_id=connection_id),
    )


# Installation ----------------------------------------------------------------------------------


def test_app_config_has_the_original_class_name_and_label():
    """``INSTALLED_APPS`` may name the app by its module or by its AppConfig class."""
    from django.apps import apps

    from django_aws_api_gateway_websockets.apps import DjangoAwsApiGatewayWebsocketsConfig

    config = apps.get_app_config("django_aws_api_gateway_websockets")
    assert isinstance(config, DjangoAwsApiGatewayWebsocketsConfig)
    assert config.default_auto_field == "django.db.models.BigAutoField"


# WebSocketView settings (settings page: names and documented defaults) ------------------------


def test_view_defaults_are_the_documented_ones():
    assert WebSocketView.USE_WS_TOKEN is True
    assert WebSocketView.RATE_LIMIT_ENABLED is True
    assert WebSocketView.MAX_BODY_SIZE == 1024 * 128
    assert WebSocketView.MAX_CHANNEL_NAME_LENGTH == 191
    assert WebSocketView.SEND_EXCEPTION_MAIL is True
    assert WebSocketView.route_selection_key == "action"
    assert WebSocketView.handler_selection_key == "handler"
    assert WebSocketView.expected_useragent_prefix == "AmazonAPIGateway_"
    assert WebSocketView.aws_api_gateway_id is None
    assert WebSocketView.http_method_names == ["post"]


@compat_urls
@pytest.mark.django_db
@pytest.mark.parametrize(("length", "status"), [(191, 200), (192, 400)])
def test_channel_names_up_to_max_channel_name_length_connect(api_gateway, length, status):
    response = _connect(Client(), channel="c" * length)
    assert response.status_code == status
    assert WebSocketSession.objects.filter(channel_name="c" * length).exists() is (status == 200)


@compat_urls
@pytest.mark.django_db
def test_connect_without_channel_uses_the_gateways_default_channel(api_gateway):
    api_gateway.default_channel_name = "lobby"
    api_gateway.save()
    response = Client().post(
        "/ws/connect",
        data="",
        content_type="application/json",
        **api_gateway_connect_headers(connection_id="c-1"),
    )
    assert response.status_code == 200
    assert WebSocketSession.objects.get(connection_id="c-1").channel_name == "lobby"


@compat_urls
@pytest.mark.django_db
def test_a_failing_handler_mails_the_admins_by_default(api_gateway, websocket_session, settings):
    """SEND_EXCEPTION_MAIL defaults to True: ``mail_admins`` when a handler raises."""
    settings.ADMINS = [("Ops", "ops@example.com")]
    response = _send(Client(), {"action": "explode"}, route="explode", connection_id="connection-1")
    assert response.status_code == 500
    assert len(mail.outbox) == 1
    assert "handler bug" not in response.content.decode()


@compat_urls
@pytest.mark.django_db
def test_a_client_repeating_a_failing_frame_cannot_flood_the_admins(
    api_gateway, websocket_session, settings, monkeypatch
):
    """One mail per view class and exception type per EXCEPTION_MAIL_INTERVAL (60 s)."""
    from django_aws_api_gateway_websockets import views

    settings.ADMINS = [("Ops", "ops@example.com")]
    client = Client()
    for _ in range(25):
        response = _send(
            client, {"action": "explode"}, route="explode", connection_id="connection-1"
        )
        assert response.status_code == 500
    assert len(mail.outbox) == 1

    clock = views.time.monotonic() + 61
    monkeypatch.setattr(views.time, "monotonic", lambda: clock)
    _send(client, {"action": "explode"}, route="explode", connection_id="connection-1")
    assert len(mail.outbox) == 2


@compat_urls
@pytest.mark.django_db
def test_allowed_handlers_limit_what_a_client_may_call(api_gateway, websocket_session):
    client = Client()
    listed = _send(
        client,
        {"action": "send_message"},
        prefix="/listed",
        route="send_message",
        connection_id="connection-1",
    )
    assert listed.status_code == 200
    assert listed.json() == {"handler": "send_message"}
    unlisted = _send(
        client,
        {"action": "fetch_history"},
        prefix="/listed",
        route="fetch_history",
        connection_id="connection-1",
    )
    assert unlisted.json() == {"handler": "default"}, "an unlisted name falls back to default"


@compat_urls
@pytest.mark.django_db
def test_handler_key_selects_the_django_method_independently_of_action(
    api_gateway, websocket_session
):
    response = _send(
        Client(),
        {"action": "default", "handler": "send_message"},
        prefix="/listed",
        connection_id="connection-1",
    )
    assert response.json() == {"handler": "send_message"}


@compat_urls
@pytest.mark.django_db
def test_aws_api_gateway_id_pins_the_view_to_one_api(api_gateway):
    other = ApiGateway.objects.create(api_name="Other", api_id="zzz999", api_created=True)
    assert (
        _connect(Client(), prefix="/pinned", api_id="abc123", connection_id="c-1").status_code
        == 200
    )
    refused = _connect(Client(), prefix="/pinned", api_id=other.api_id, connection_id="c-2")
    assert 400 <= refused.status_code < 500
    assert not WebSocketSession.objects.filter(connection_id="c-2").exists()


# Tokens (websocket_tokens page) ---------------------------------------------------------------


@compat_urls
@pytest.mark.django_db
def test_token_endpoint_gives_a_signed_in_user_a_token_and_its_lifetime():
    user = get_user_model().objects.create_user("alice", password="pw")
    client = Client()
    client.force_login(user)
    response = client.post("/api/ws-token/")
    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == 60
    token = WebSocketToken.objects.get(token=body["token"])
    assert token.user == user and token.used is False


@compat_urls
@pytest.mark.django_db
def test_token_endpoint_refuses_anonymous_users_and_get():
    client = Client()
    assert client.post("/api/ws-token/").status_code == 403
    assert client.get("/api/ws-token/").status_code == 405
    assert not WebSocketToken.objects.exists()


@compat_urls
@pytest.mark.django_db
def test_token_expiry_setting_is_reported(settings):
    settings.WEBSOCKETS = {"token_expiry_seconds": 30}
    user = get_user_model().objects.create_user("bob", password="pw")
    client = Client()
    client.force_login(user)
    assert client.post("/api/ws-token/").json()["expires_in"] == 30


@pytest.mark.django_db
def test_custom_token_view_building_blocks():
    """The documented custom token view: check_rate_limit, generate_token, validate_and_consume."""
    user = get_user_model().objects.create_user("carol", password="pw")
    assert WebSocketToken.check_rate_limit(user, max_tokens_per_minute=10) is True
    token = WebSocketToken.generate_token(user=user, session_key="s" * 32)
    assert isinstance(token.token, str) and len(token.token) >= 32
    assert (
        WebSocketToken.validate_and_consume(token_value=token.token, session_key="s" * 32) == user
    )
    assert (
        WebSocketToken.validate_and_consume(token_value=token.token, session_key="s" * 32) is None
    )
    other = WebSocketToken.generate_token(user=user, session_key="s" * 32)
    assert (
        WebSocketToken.validate_and_consume(token_value=other.token, session_key="t" * 32) is None
    )


@pytest.mark.django_db
def test_token_rate_limit_counts_tokens_in_the_last_minute():
    user = get_user_model().objects.create_user("dave", password="pw")
    for _ in range(3):
        WebSocketToken.generate_token(user=user, session_key="k" * 32)
    assert WebSocketToken.check_rate_limit(user, max_tokens_per_minute=3) is False
    assert WebSocketToken.check_rate_limit(user, max_tokens_per_minute=4) is True


# Rate limiting (rate_limiting page) -----------------------------------------------------------


@pytest.mark.django_db
def test_connection_rate_limit_counts_per_address_within_the_window():
    for _ in range(3):
        ConnectionRateLimit.record_attempt(ip_address="10.0.0.1", successful=False)
    assert ConnectionRateLimit.check_rate_limit(
        ip_address="10.0.0.1", max_attempts=3, window_minutes=5
    ) == (False, 3)
    assert ConnectionRateLimit.check_rate_limit(
        ip_address="10.0.0.2", max_attempts=3, window_minutes=5
    ) == (True, 0)
    ConnectionRateLimit.objects.update(attempt_time=timezone.now() - timedelta(minutes=6))
    allowed, _count = ConnectionRateLimit.check_rate_limit(
        ip_address="10.0.0.1", max_attempts=3, window_minutes=5
    )
    assert allowed is True


@pytest.mark.django_db
def test_old_rate_limit_records_are_cleaned_up():
    ConnectionRateLimit.record_attempt(ip_address="10.0.0.1")
    ConnectionRateLimit.objects.update(attempt_time=timezone.now() - timedelta(days=8))
    ConnectionRateLimit.record_attempt(ip_address="10.0.0.1")
    ConnectionRateLimit.cleanup_old_records(days=7)
    assert ConnectionRateLimit.objects.count() == 1


@compat_urls
@pytest.mark.django_db
def test_view_rate_limit_attributes_refuse_excess_connects(api_gateway):
    class Strict(PublicWebSocketView):
        RATE_LIMIT_MAX_ATTEMPTS = 2
        RATE_LIMIT_WINDOW_MINUTES = 5

    from django.test import RequestFactory

    factory = RequestFactory()
    statuses = []
    for number in range(3):
        request = factory.post(
            "/ws/connect?channel=general",
            data="",
            content_type="application/json",
            **api_gateway_connect_headers(connection_id=f"c-{number}"),
        )
        statuses.append(Strict.as_view()(request, route="connect").status_code)
    assert statuses[:2] == [200, 200]
    assert 400 <= statuses[2] < 500


# Models and sending (models, message_patterns pages) -------------------------------------------


@pytest.mark.django_db
def test_gateway_defaults_are_the_documented_ones():
    gateway = ApiGateway.objects.create(api_name="Defaults")
    assert gateway.route_selection_expression == "$request.body.action"
    assert gateway.api_key_selection_expression == "$request.header.x-api-key"
    assert gateway.route_key == "$default"
    assert gateway.stage_name == "production"
    assert gateway.tags == {}
    assert gateway.api_created is False and gateway.custom_domain_created is False


@pytest.mark.django_db
def test_a_users_sessions_are_reachable_from_the_user():
    """``user.websocket_sessions.filter(connected=True).send_message(...)``."""
    user = get_user_model().objects.create_user("erin", password="pw")
    session = WebSocketSession.objects.create(connection_id="c-9", user=user, channel_name="x")
    assert list(user.websocket_sessions.filter(connected=True)) == [session]
    assert hasattr(user.websocket_sessions.filter(connected=True), "send_message")


@pytest.mark.django_db
def test_region_setting_prefers_the_gateway_specific_one(settings):
    from django_aws_api_gateway_websockets.models import get_region_name

    settings.AWS_REGION_NAME = "us-east-1"
    settings.AWS_GATEWAY_REGION_NAME = "eu-west-1"
    assert get_region_name() == "eu-west-1"
    del settings.AWS_GATEWAY_REGION_NAME
    assert get_region_name() == "us-east-1"


# Management commands (management_commands, cleanup pages) --------------------------------------


@pytest.mark.django_db
def test_clear_websocket_sessions_deletes_only_disconnected_ones():
    WebSocketSession.objects.create(connection_id="connected", connected=True)
    WebSocketSession.objects.create(connection_id="disconnected", connected=False)
    call_command("clearWebSocketSessions", stdout=StringIO())
    assert WebSocketSession.objects.filter(connection_id="connected").exists()
    assert not WebSocketSession.objects.filter(connection_id="disconnected").exists()


@pytest.mark.django_db
def test_cleanup_websocket_tokens_takes_the_documented_options():
    user = get_user_model().objects.create_user("frank", password="pw")
    old = WebSocketToken.generate_token(user=user, session_key="k" * 32)
    fresh = WebSocketToken.generate_token(user=user, session_key="k" * 32)
    WebSocketToken.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(seconds=301)
    )
    ConnectionRateLimit.record_attempt(ip_address="10.0.0.1")
    ConnectionRateLimit.objects.update(attempt_time=timezone.now() - timedelta(days=8))
    call_command(
        "cleanupWebSocketTokens", "--token-age=300", "--rate-limit-age=7", stdout=StringIO()
    )
    assert list(WebSocketToken.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert not ConnectionRateLimit.objects.exists()


@pytest.mark.django_db
def test_create_commands_take_pk():
    from django.core.management import CommandError

    for command in ("createApiGateway", "createCustomDomain"):
        with pytest.raises(CommandError):
            call_command(command, "--pk=999999", stdout=StringIO(), stderr=StringIO())


# Admin (admin page) ----------------------------------------------------------------------------


def test_admin_actions_and_inline_are_the_documented_ones():
    from django.contrib import admin as django_admin

    from django_aws_api_gateway_websockets.admin import ApiGatewayAdditionalRouteInline

    model_admin = django_admin.site._registry[ApiGateway]
    labels = {
        getattr(action, "short_description", None)
        for action in model_admin.actions
        if callable(action)
    }
    labels |= {
        getattr(getattr(model_admin, action, None), "short_description", None)
        for action in model_admin.actions
        if isinstance(action, str)
    }
    assert {"Create API Gateway", "Create Custom Domain"} <= labels
    assert ApiGatewayAdditionalRouteInline in model_admin.inlines
    assert {"api_created", "custom_domain_created"} <= set(model_admin.list_filter)
    assert {"api_name", "domain_name"} <= set(model_admin.search_fields)


def test_token_and_rate_limit_records_are_read_only_in_the_admin(rf, admin_user):
    from django.contrib import admin as django_admin

    request = rf.get("/")
    request.user = admin_user
    for model in (WebSocketToken, ConnectionRateLimit):
        model_admin = django_admin.site._registry[model]
        assert model_admin.has_add_permission(request) is False
        assert model_admin.has_change_permission(request) is False


# Permissions and whitelisting (permissions, security pages) ------------------------------------


class AnyPermissionView(PublicWebSocketView):
    permissions_required = ["auth.view_user", "auth.change_user"]


class AllPermissionsView(PublicWebSocketView):
    all_permissions_required = ["auth.view_user", "auth.change_user"]


class HelperView(PublicWebSocketView):
    def _internal_helper(self, request, *args, **kwargs):
        return JsonResponse({"handler": "_internal_helper"})


urlpatterns += [
    path("any/<slug:route>", AnyPermissionView.as_view()),
    path("all/<slug:route>", AllPermissionsView.as_view()),
    path("helper/<slug:route>", HelperView.as_view()),
]


def _user_with(*codenames):
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user(f"user-{len(codenames)}-{'-'.join(codenames)}")
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


@compat_urls
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("prefix", "codenames", "allowed"),
    [
        ("/any", ("view_user",), True),
        ("/any", (), False),
        ("/all", ("view_user",), False),
        ("/all", ("view_user", "change_user"), True),
    ],
)
def test_permissions_required_any_and_all(api_gateway, prefix, codenames, allowed):
    WebSocketSession.objects.create(
        connection_id="perm-1", api_gateway=api_gateway, user=_user_with(*codenames)
    )
    response = _send(Client(), {"action": "default"}, prefix=prefix, connection_id="perm-1")
    if allowed:
        assert response.status_code == 200
    else:
        assert response.status_code == 403


@compat_urls
@pytest.mark.django_db
def test_private_methods_are_never_handlers(api_gateway, websocket_session):
    response = _send(
        Client(),
        {"action": "_internal_helper", "handler": "_internal_helper"},
        prefix="/helper",
        connection_id="connection-1",
    )
    assert response.json() == {"ok": True}


# Rate limit defaults (rate_limiting page, WEBSOCKETS setting) ----------------------------------


@compat_urls
@pytest.mark.django_db
def test_connects_are_limited_to_20_a_minute_by_default(api_gateway):
    client = Client()
    statuses = [_connect(client, connection_id=f"c-{n}").status_code for n in range(21)]
    assert statuses[:20] == [200] * 20
    assert 400 <= statuses[20] < 500
    assert WebSocketSession.objects.count() == 20


@compat_urls
@pytest.mark.django_db
def test_websockets_setting_changes_the_connect_limit(api_gateway, settings):
    settings.WEBSOCKETS = {"rate_limit_max_attempts": 2, "rate_limit_window_minutes": 1}
    client = Client()
    statuses = [_connect(client, connection_id=f"c-{n}").status_code for n in range(3)]
    assert statuses[:2] == [200, 200] and 400 <= statuses[2] < 500


@pytest.mark.django_db
def test_rate_limit_enabled_false_turns_the_connect_limit_off(api_gateway, settings):
    from django.test import RequestFactory

    class Unlimited(PublicWebSocketView):
        RATE_LIMIT_ENABLED = False

    settings.WEBSOCKETS = {"rate_limit_max_attempts": 1}
    factory = RequestFactory()
    for number in range(3):
        request = factory.post(
            "/ws/connect?channel=general",
            data="",
            content_type="application/json",
            **api_gateway_connect_headers(connection_id=f"u-{number}"),
        )
        assert Unlimited.as_view()(request, route="connect").status_code == 200


@compat_urls
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("websockets", "limit"), [({}, 20), ({"token_rate_limit_per_minute": 3}, 3)]
)
def test_token_endpoint_is_limited_per_user_per_minute(settings, websockets, limit):
    settings.WEBSOCKETS = websockets
    client = Client()
    client.force_login(get_user_model().objects.create_user("grace"))
    statuses = [client.post("/api/ws-token/").status_code for _ in range(limit + 1)]
    assert statuses == [200] * limit + [403]


# The token flow end to end (websocket_tokens page) ---------------------------------------------


class TokenProtectedView(PublicWebSocketView):
    USE_WS_TOKEN = True


urlpatterns += [path("protected/<slug:route>", TokenProtectedView.as_view())]


@compat_urls
@pytest.mark.django_db
def test_a_token_lets_its_session_connect_once(api_gateway):
    user = get_user_model().objects.create_user("heidi")
    client = Client()
    client.force_login(user)
    token = client.post("/api/ws-token/").json()["token"]

    def connect(connection_id, with_token=token):
        headers = api_gateway_connect_headers(connection_id=connection_id)
        headers["HTTP_COOKIE"] = f"sessionid={client.cookies['sessionid'].value}"
        query = f"?channel=general&ws_token={with_token}" if with_token else "?channel=general"
        return Client().post(
            f"/protected/connect{query}", data="", content_type="application/json", **headers
        )

    assert connect("t-1").status_code == 200
    assert WebSocketSession.objects.get(connection_id="t-1").user == user
    assert 400 <= connect("t-2").status_code < 500, "a token is single-use"
    assert 400 <= connect("t-3", with_token=None).status_code < 500, "a token is required"
    assert not WebSocketSession.objects.filter(connection_id__in=["t-2", "t-3"]).exists()


# Sending (message_patterns page) ---------------------------------------------------------------


def _management_client(**post_to_connection):
    from unittest.mock import Mock

    client = Mock()
    client.post_to_connection.configure_mock(**post_to_connection)
    return client


@pytest.mark.django_db
def test_a_single_send_returns_the_post_to_connection_response(websocket_session, settings):
    from unittest.mock import patch

    settings.AWS_GATEWAY_REGION_NAME = "eu-west-1"
    answer = {"ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": "r-1"}}
    client = _management_client(return_value=answer)
    with patch("django_aws_api_gateway_websockets.models.get_boto3_client", return_value=client):
        response = websocket_session.send_message({"type": "notification", "message": "hi"})
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    sent = client.post_to_connection.call_args.kwargs
    assert sent["ConnectionId"] == "connection-1"
    assert json.loads(sent["Data"]) == {"type": "notification", "message": "hi"}


@pytest.mark.django_db
def test_a_single_send_to_a_gone_connection_returns_none_and_marks_it(websocket_session, settings):
    from unittest.mock import patch

    from botocore.exceptions import ClientError

    settings.AWS_GATEWAY_REGION_NAME = "eu-west-1"
    gone = ClientError(
        {"Error": {"Code": "GoneException"}, "ResponseMetadata": {"HTTPStatusCode": 410}},
        "PostToConnection",
    )
    client = _management_client(side_effect=gone)
    with patch("django_aws_api_gateway_websockets.models.get_boto3_client", return_value=client):
        assert websocket_session.send_message({"type": "x"}) is None
    websocket_session.refresh_from_db()
    assert websocket_session.connected is False


@pytest.mark.django_db
def test_a_message_over_128_kib_goes_in_parts_and_one_over_the_maximum_is_refused(
    websocket_session, settings
):
    """Deliberately different (docs/migrating.md, "Messages over 128 KiB"): the original
    refused more than 128 KiB; here that is sent in parts, and the refusal, still before
    AWS, comes above ``WEBSOCKETS["max_message_bytes"]``."""
    import json
    from unittest.mock import patch

    settings.AWS_GATEWAY_REGION_NAME = "eu-west-1"
    client = _management_client(return_value={})
    target = "django_aws_api_gateway_websockets.models.get_boto3_client"
    with patch(target, return_value=client):
        websocket_session.send_message({"blob": "x" * (128 * 1024)})
        posts = [call.kwargs["Data"] for call in client.post_to_connection.call_args_list]
        assert [json.loads(post)["type"] for post in posts] == ["part", "part"]
        client.post_to_connection.reset_mock()
        settings.WEBSOCKETS = {"max_message_bytes": 128 * 1024}
        with pytest.raises(ValueError):
            websocket_session.send_message({"blob": "x" * (128 * 1024)})
    client.post_to_connection.assert_not_called()


@pytest.mark.django_db
def test_models_display_as_the_original_did(api_gateway):
    from django_aws_api_gateway_websockets.models import ApiGatewayAdditionalRoute

    assert str(api_gateway) == "Test API"
    assert str(WebSocketSession(connection_id="abc=")) == "abc="
    assert str(ApiGatewayAdditionalRoute(name="Chat", route_key="chat")) == "Chat"


@pytest.mark.django_db
def test_deleting_a_gateway_deletes_its_sessions(api_gateway, websocket_session):
    """A difference (docs/migrating.md): the original kept the rows with no gateway."""
    api_gateway.delete()
    assert not WebSocketSession.objects.filter(pk=websocket_session.pk).exists()


# Templates and mixins (templates_and_mixins page) ----------------------------------------------


@pytest.mark.django_db
def test_route_mixin_renders_the_documented_template(rf):
    from django.template import Context, Template
    from django.views.generic import TemplateView

    from django_aws_api_gateway_websockets.mixins import AddWebSocketRouteToContextMixin
    from django_aws_api_gateway_websockets.models import ApiGatewayAdditionalRoute

    class DashboardView(AddWebSocketRouteToContextMixin, TemplateView):
        template_name = "unused.html"
        websocket_route_key = "dashboard"
        channel_name = "dashboard"

    page = Template(
        "{% if api_gateway_route %}{% with api_gateway_route.api_gateway as websocket %}"
        "wss://{{ websocket.domain_name }}?channel={{ channel_name|urlencode }}"
        "{% endwith %}{% else %}none{% endif %}"
    )

    def render():
        view = DashboardView()
        view.setup(rf.get("/dashboard/"))
        return page.render(Context(view.get_context_data()))

    assert render() == "none"
    gateway = ApiGateway.objects.create(api_name="Site", domain_name="ws.example.com")
    ApiGatewayAdditionalRoute.objects.create(
        api_gateway=gateway, name="Dash", route_key="dashboard"
    )
    assert render() == "wss://ws.example.com?channel=dashboard"


# Handlers as the documentation writes them -----------------------------------------------------


class NoneReturningView(WebSocketView):
    """The settings, rate limiting and permissions pages' handlers end with ``return None``."""

    USE_WS_TOKEN = False

    def default(self, request, *args, **kwargs):
        return None


class RoomView(PublicWebSocketView):
    """The example page's ``change_channel`` override that calls the built-in one."""

    def change_channel(self, request, *args, **kwargs):
        super().change_channel(request, *args, **kwargs)
        return JsonResponse(
            {"ok": True, "type": "channel_changed", "channel": self.websocket_session.channel_name}
        )


urlpatterns += [
    path("none/<slug:route>", NoneReturningView.as_view()),
    path("ws/chat/<slug:route>", RoomView.as_view(), name="chat_websocket"),
]


@compat_urls
@pytest.mark.django_db
def test_a_handler_returning_none_answers_an_empty_json_object(api_gateway, websocket_session):
    response = _send(Client(), {"action": "default"}, prefix="/none", connection_id="connection-1")
    assert response.status_code == 200
    assert response.json() == {}


@compat_urls
@pytest.mark.django_db
def test_connect_and_disconnect_need_no_handler_of_the_projects_own(api_gateway):
    client = Client()
    assert _connect(client, prefix="/none", connection_id="n-1").status_code == 200
    response = client.post(
        "/none/disconnect",
        data="",
        content_type="application/json",
        **api_gateway_headers(connection_id="n-1"),
    )
    assert response.status_code == 200
    assert WebSocketSession.objects.get(connection_id="n-1").connected is False


@compat_urls
@pytest.mark.django_db
def test_an_overridden_change_channel_can_call_the_built_in_one(api_gateway, websocket_session):
    response = _send(
        Client(),
        {"action": "change_channel", "channel": "room_2"},
        prefix="/ws/chat",
        route="change_channel",
        connection_id="connection-1",
    )
    assert response.json() == {"ok": True, "type": "channel_changed", "channel": "room_2"}
    websocket_session.refresh_from_db()
    assert websocket_session.channel_name == "room_2"


@pytest.mark.django_db
def test_as_view_debug_true_names_the_headers_of_a_refused_request(api_gateway, rf, caplog):
    """``ExampleWebSocketView.as_view(debug=True)`` (local development page): accepted, and a
    refusal's log names the headers that did arrive (never their values)."""
    view = PublicWebSocketView.as_view(debug=True)
    headers = api_gateway_connect_headers(connection_id="d-1")
    del headers["HTTP_CONNECTIONID"]
    request = rf.post("/ws/connect", data="", content_type="application/json", **headers)
    with caplog.at_level("WARNING", logger="django_aws_api_gateway_websockets"):
        response = view(request, route="connect")
    assert response.status_code == 400
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Sec-Websocket-Key" in logged and "test-key" not in logged
    caplog.clear()
    with caplog.at_level("WARNING", logger="django_aws_api_gateway_websockets"):
        PublicWebSocketView.as_view()(request, route="connect")
    assert "Sec-Websocket-Key" not in "\n".join(r.getMessage() for r in caplog.records)


class EmptyAllowedView(PublicWebSocketView):
    """``ALLOWED_HANDLERS = set()`` was the original's default: it means "detect them"."""

    ALLOWED_HANDLERS = set()

    def fetch_history(self, request, *args, **kwargs):
        return JsonResponse({"handler": "fetch_history"})


urlpatterns += [path("empty/<slug:route>", EmptyAllowedView.as_view())]


@compat_urls
@pytest.mark.django_db
def test_an_empty_allowed_handlers_set_detects_the_views_methods(api_gateway, websocket_session):
    response = _send(
        Client(), {"action": "fetch_history"}, prefix="/empty", connection_id="connection-1"
    )
    assert response.json() == {"handler": "fetch_history"}


@pytest.mark.django_db
def test_a_users_tokens_and_connection_attempts_are_reachable_from_the_user():
    user = get_user_model().objects.create_user("ivan")
    token = WebSocketToken.generate_token(user=user, session_key="k" * 32)
    attempt = ConnectionRateLimit.record_attempt(ip_address="10.0.0.3", user=user)
    assert list(user.websocket_tokens.all()) == [token]
    assert list(user.connection_attempts.all()) == [attempt]


# The example page's chat view: history, a room broadcast and the sender's user -----------------


class ExampleChatView(WebSocketView):
    USE_WS_TOKEN = False

    def chat_message(self, request, *args, **kwargs):
        room = self.websocket_session.channel_name
        text = str(self.body.get("message", "")).strip()
        user = request.user if request.user.is_authenticated else None
        username = user.get_username() if user else "Anonymous"
        WebSocketSession.objects.filter(channel_name=room).send_message(
            {"type": "chat_message", "room": room, "username": username, "message": text}
        )
        return JsonResponse({"ok": True})

    def default(self, request, *args, **kwargs):
        return JsonResponse({"ok": False, "error": "Unknown WebSocket action."}, status=400)


urlpatterns += [path("example/chat/<slug:route>", ExampleChatView.as_view())]


@compat_urls
@pytest.mark.django_db
@pytest.mark.parametrize("signed_in", [False, True])
def test_the_example_chat_broadcasts_to_the_room(api_gateway, settings, signed_in):
    from unittest.mock import patch

    settings.AWS_GATEWAY_REGION_NAME = "eu-west-1"
    user = get_user_model().objects.create_user("judy") if signed_in else None
    WebSocketSession.objects.create(
        connection_id="sender", api_gateway=api_gateway, channel_name="lobby", user=user
    )
    WebSocketSession.objects.create(
        connection_id="peer", api_gateway=api_gateway, channel_name="lobby"
    )
    WebSocketSession.objects.create(
        connection_id="elsewhere", api_gateway=api_gateway, channel_name="other"
    )
    client = _management_client(return_value={"ResponseMetadata": {"HTTPStatusCode": 200}})
    with patch("django_aws_api_gateway_websockets.models.get_boto3_client", return_value=client):
        response = _send(
            Client(),
            {"action": "chat_message", "message": " hello "},
            prefix="/example/chat",
            route="chat_message",
            connection_id="sender",
        )
    assert response.json() == {"ok": True}
    sent = {
        call.kwargs["ConnectionId"]: json.loads(call.kwargs["Data"])
        for call in client.post_to_connection.call_args_list
    }
    assert set(sent) == {"sender", "peer"}
    assert sent["peer"]["username"] == ("judy" if signed_in else "Anonymous")
    assert sent["peer"]["message"] == "hello"


@compat_urls
@pytest.mark.django_db
def test_without_tokens_a_signed_in_browsers_cookie_still_names_the_user(api_gateway):
    """``USE_WS_TOKEN = False`` (the upgrade guide's legacy view): a connect carrying the
    site's session cookie is still associated with that user, as Django's middleware sees it."""
    user = get_user_model().objects.create_user("kim")
    browser = Client()
    browser.force_login(user)
    headers = api_gateway_connect_headers(connection_id="legacy-1")
    headers["HTTP_COOKIE"] = f"sessionid={browser.cookies['sessionid'].value}"
    response = Client().post(
        "/ws/connect?channel=general", data="", content_type="application/json", **headers
    )
    assert response.status_code == 200
    assert WebSocketSession.objects.get(connection_id="legacy-1").user == user


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"api_name": "bad/name"}, "api_name"),
        ({"api_name": "ok", "domain_name": "not a host"}, "domain_name"),
    ],
)
def test_saving_a_gateway_validates_its_names(fields, bad):
    """The original's ``save()`` ran the validation: code (not only the admin form) that
    creates a gateway with a name AWS would refuse gets a ValidationError naming the field."""
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as raised:
        ApiGateway.objects.create(**fields)
    assert bad in raised.value.message_dict
    assert not ApiGateway.objects.exists()


@pytest.mark.django_db
def test_saving_a_gateway_adds_the_trailing_slash_to_its_endpoint():
    gateway = ApiGateway.objects.create(
        api_name="Slash", target_base_endpoint="https://example.com/ws"
    )
    assert gateway.target_base_endpoint == "https://example.com/ws/"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "argv",
    [
        ["registerLocalGateway", "--url=ws://127.0.0.1:9", "--api-id=loc", "--stage=bad stage"],
        [
            "registerLocalGateway",
            "--url=ws://127.0.0.1:9",
            "--api-id=loc",
            "--stage=s",
            "--name=a/b",
        ],
        ["runapigateway", "--stage=bad stage"],
    ],
)
def test_local_gateway_commands_refuse_a_name_aws_would_refuse(argv):
    """With ``save()`` validating names, a bad ``--stage`` or ``--name`` is a clear error."""
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="stage|name"):
        call_command(*argv, stdout=StringIO(), stderr=StringIO())
    assert not ApiGateway.objects.exists()


@pytest.mark.django_db
def test_token_admin_previews_the_token_under_the_original_name():
    """A project's admin subclass may list ``token_preview``: it shows a part, never all."""
    from django.contrib import admin as django_admin

    user = get_user_model().objects.create_user("liam")
    token = WebSocketToken.generate_token(user=user, session_key="k" * 32)
    model_admin = django_admin.site._registry[WebSocketToken]
    assert "token_preview" in model_admin.list_display
    preview = model_admin.token_preview(token)
    assert preview and token.token not in preview and preview[:4] == token.token[:4]
