"""A small room view for the tests of ``django_aws_api_gateway_websockets.testing``: it replies
to its own connection (a single send) and broadcasts to its channel (a fan-out)."""

from django.http import JsonResponse
from django.urls import path

from django_aws_api_gateway_websockets.models import WebSocketSession
from django_aws_api_gateway_websockets.views import WebSocketTokenView, WebSocketView


class RoomView(WebSocketView):
    def whisper(self, request, *args, **kwargs):
        self.websocket_session.send_message({"whisper": self.body.get("text")})
        return JsonResponse({"sent": 1})

    def say(self, request, *args, **kwargs):
        room = WebSocketSession.objects.filter(channel_name=self.websocket_session.channel_name)
        report = room.send_message({"said": self.body.get("text"), "by": request.user.username})
        return JsonResponse({"delivered": report.delivered, "gone": report.gone})

    def shout(self, request, *args, **kwargs):
        print("a plain print from the view")
        return JsonResponse({"shouted": True})

    def whoami(self, request, *args, **kwargs):
        return JsonResponse({"user": request.user.get_username()})


class OpenRoomView(RoomView):
    USE_WS_TOKEN = False


class WhoamiRouteView(WebSocketView):
    """Mounted where the Lambda handler delivers a custom route named ``whoami``."""

    USE_WS_TOKEN = False

    def default(self, request, *args, **kwargs):
        return JsonResponse({"route": "whoami"})


urlpatterns = [
    path("open/whoami", WhoamiRouteView.as_view()),
    path("api/ws-token/", WebSocketTokenView.as_view()),
    path("ws/", RoomView.as_view()),
    path("ws/<slug:route>", RoomView.as_view()),
    path("open/<slug:route>", OpenRoomView.as_view()),
]
