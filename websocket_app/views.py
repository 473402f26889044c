"""The example chat, built only on the library's public API."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.generic import TemplateView

from django_aws_api_gateway_websockets.mixins import AddWebSocketRouteToContextMixin
from django_aws_api_gateway_websockets.models import WebSocketSession
from django_aws_api_gateway_websockets.views import WebSocketView

from .models import ChatMessage, Room

HISTORY_LENGTH = 50
MAX_MESSAGE_LENGTH = 2000


class ChatWebSocketView(WebSocketView):
    """Rooms are channels: join with ``?channel=<room slug>`` or ``change_channel``."""

    ADDITIONAL_ALLOWED_HANDLERS = {"change_channel"}

    def is_channel_allowed(self, request: HttpRequest, channel_name: str) -> bool:
        room = Room.objects.filter(slug=channel_name).first()
        return room is None or room.admits(request.user)

    def chat_message(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        text = self.body.get("message")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_MESSAGE_LENGTH:
            return JsonResponse(
                {"error": f"'message' must be 1 to {MAX_MESSAGE_LENGTH} characters"}, status=400
            )
        channel = self.websocket_session.channel_name
        if not self.is_channel_allowed(request, channel):
            return self.permission_denied(request)
        room, _ = Room.objects.get_or_create(slug=channel, defaults={"title": channel})
        user = request.user if request.user.is_authenticated else None
        message = ChatMessage.objects.create(room=room, user=user, text=text.strip())
        report = WebSocketSession.objects.filter(channel_name=channel).send_message(
            message.as_event()
        )
        return JsonResponse({"type": "ack", "delivered": report.delivered})

    def fetch_history(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        channel = self.websocket_session.channel_name
        recent = ChatMessage.objects.filter(room__slug=channel).select_related("room", "user")
        messages = [
            m.as_event() for m in reversed(recent.order_by("-created_on", "-pk")[:HISTORY_LENGTH])
        ]
        return JsonResponse({"type": "history", "room": channel, "messages": messages})

    def restricted(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.has_perm("websocket_app.can_use_chat"):
            return self.permission_denied(request)
        return JsonResponse({"type": "restricted", "ok": True})

    def default(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return JsonResponse({"error": "Unknown action"}, status=400)


class IndexView(AddWebSocketRouteToContextMixin, TemplateView):
    template_name = "websocket_app/index.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["rooms"] = [room for room in Room.objects.all() if room.admits(self.request.user)]
        return context
