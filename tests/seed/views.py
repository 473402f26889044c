"""The testing guide's example views, verbatim."""

from django.http import JsonResponse

from django_aws_api_gateway_websockets.views import WebSocketView


class ExampleWebSocketView(WebSocketView):
    USE_WS_TOKEN = False

    def default(self, request, *args, **kwargs):
        return JsonResponse(
            {
                "ok": True,
                "message": self.body.get("message"),
            }
        )


class ChatWebSocketView(WebSocketView):
    USE_WS_TOKEN = False

    ALLOWED_HANDLERS = {
        "default",
        "chat_message",
        "fetch_history",
    }

    def chat_message(self, request, *args, **kwargs):
        return JsonResponse({"handler": "chat_message"})

    def fetch_history(self, request, *args, **kwargs):
        return JsonResponse({"handler": "fetch_history"})

    def default(self, request, *args, **kwargs):
        return JsonResponse({"handler": "default"})
