"""Views with non-default options, mounted by ``tests.support_urls`` for the view tests."""

from __future__ import annotations

from django.http import JsonResponse

from django_aws_api_gateway_websockets.views import WebSocketView

CALLS: list[str] = []


class EchoView(WebSocketView):
    """Token-free view whose handlers record that they ran."""

    USE_WS_TOKEN = False

    def default(self, request, *args, **kwargs):
        CALLS.append("default")
        return JsonResponse({"handler": "default", "body": self.body})

    def echo(self, request, *args, **kwargs):
        CALLS.append("echo")
        return JsonResponse({"handler": "echo", "user": request.user.get_username()})

    def connect(self, request, *args, **kwargs):
        # Overriding a lifecycle hook must not make it a message handler.
        CALLS.append("connect")
        return super().connect(request, *args, **kwargs)

    def explode(self, request, *args, **kwargs):
        raise RuntimeError("secret internal detail")

    def _private(self, request, *args, **kwargs):
        CALLS.append("_private")
        return JsonResponse({"handler": "_private"})


class TokenView(EchoView):
    USE_WS_TOKEN = True


class ListedView(EchoView):
    """Explicit handler list, even naming framework methods, which must stay refused."""

    ALLOWED_HANDLERS = {"default", "echo", "dispatch", "connect", "setup", "_private"}
    ADDITIONAL_ALLOWED_HANDLERS = {"change_channel"}


class PinnedApiView(EchoView):
    aws_api_gateway_id = "abc123"


class AnyPermissionView(EchoView):
    permissions_required = ["auth.view_user", "auth.change_user"]


class AllPermissionView(EchoView):
    all_permissions_required = ["auth.view_user", "auth.change_user"]


class BothPermissionView(EchoView):
    permissions_required = ["auth.add_user"]
    all_permissions_required = ["auth.view_user"]


class CheckedView(EchoView):
    def _additional_connection_checks(self, request, *args, **kwargs):
        if request.GET.get("tenant") != "acme":
            return False, "Unknown tenant"
        return True, ""


class RefusingConnectView(EchoView):
    def connect(self, request, *args, **kwargs):
        return JsonResponse({"error": "closed for maintenance"}, status=403)


class QuietView(EchoView):
    SEND_EXCEPTION_MAIL = False


class SmallLimitView(EchoView):
    RATE_LIMIT_MAX_ATTEMPTS = 3
    RATE_LIMIT_WINDOW_MINUTES = 5
    MAX_BODY_SIZE = 64


class PickyChannelView(EchoView):
    """Refuses the channel "default", whether asked for or the gateway's default."""

    def is_channel_allowed(self, request, channel_name):
        return channel_name != "default"


class BrokenHooksView(EchoView):
    def connect(self, request, *args, **kwargs):
        raise RuntimeError("connect hook bug")

    def disconnect(self, request, *args, **kwargs):
        raise RuntimeError("disconnect hook bug")
