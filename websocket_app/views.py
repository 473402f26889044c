"""The example chat, built only on the library's public API."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.contrib.auth.views import LogoutView
from django.db.models import Max, Min
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.generic import TemplateView

from django_aws_api_gateway_websockets.mixins import (
    AddWebSocketRouteToContextMixin,
    AppChannelWebSocketMixin,
)
from django_aws_api_gateway_websockets.models import ChannelMessage, WebSocketSession
from django_aws_api_gateway_websockets.views import WebSocketView

from .models import ChatMessage, Room

# How many of a room's latest messages a first load (or a room change) replays.
HISTORY_LENGTH = 50
MAX_MESSAGE_LENGTH = 2000


def room_audience(channel: str, room: Room | None) -> Any:
    """The sessions that may hear ``channel``, whose room is ``room`` (None: it has none): in
    a private room, only its current members (someone removed keeps their socket but stops
    receiving; membership is read when the query runs)."""
    sessions = WebSocketSession.objects.filter(channel_name=channel)
    if room is not None and room.is_private:
        sessions = sessions.filter(user__in=room.members.all())
    return sessions


class ChatWebSocketView(WebSocketView):
    """Rooms are channels: join with ``?channel=<room slug>`` or ``change_channel``."""

    ADDITIONAL_ALLOWED_HANDLERS = {"change_channel"}
    # The library announces joins and leaves (also of rooms changed with change_channel).
    PRESENCE = True

    def setup(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        super().setup(request, *args, **kwargs)
        self._rooms: dict[str, Room | None] = {}

    def _room(self, slug: str) -> Room | None:
        """The room of channel ``slug``, looked up once per request: the channel check, the
        presence audience and ``chat_message`` need it. (Underscored: public methods are
        handlers.)"""
        if slug not in self._rooms:
            self._rooms[slug] = Room.objects.filter(slug=slug).first()
        return self._rooms[slug]

    def presence_audience(self, channel_name: str) -> Any:
        # The room as this request found it: one lookup fewer on the connect path (a restored
        # SnapStart copy's first event), at the price of a room made private in the
        # milliseconds before this commit being announced to as it was.
        return room_audience(channel_name, self._room(channel_name))

    def is_channel_allowed(self, request: HttpRequest, channel_name: str) -> bool:
        room = self._room(channel_name)
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
        room = self._room(channel)
        if room is None:
            room, _ = Room.objects.get_or_create(slug=channel, defaults={"title": channel})
        user = request.user if request.user.is_authenticated else None
        message = ChatMessage.objects.create(room=room, user=user, text=text.strip())
        # Stored in the room's replay log: late joiners and reconnecting pages get it.
        report = room_audience(channel, room).broadcast(channel, message.as_event())
        return JsonResponse({"type": "ack", "delivered": report.delivered})

    def who_is_here(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Who is in the room now: a newcomer is never sent its own presence join (it is
        still connecting), so the page asks once its socket is open."""
        channel = self.websocket_session.channel_name
        if not self.is_channel_allowed(request, channel):
            return self.permission_denied(request)
        users = WebSocketSession.objects.present_users(channel)
        return JsonResponse({"type": "here_now", "channel": channel, "users": users})

    def restricted(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.has_perm("websocket_app.can_use_chat"):
            return self.permission_denied(request)
        return JsonResponse({"type": "restricted", "ok": True})

    def default(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return JsonResponse({"error": "Unknown action"}, status=400)


def rooms_for(user: Any) -> list[Room]:
    return [room for room in Room.objects.prefetch_related("members") if room.admits(user)]


def replay_starts(channels: list[str]) -> dict[str, int]:
    """Per channel, the ``since`` that replays its last ``HISTORY_LENGTH`` retained messages
    (0 for a channel with none): the page's history is that replay, bounded so a first load
    does not bring the whole log, and never before the oldest kept (no false gap notice)."""
    logs = (
        ChannelMessage.objects.filter(channel_name__in=channels)
        .values("channel_name")
        .annotate(first=Min("seq"), latest=Max("seq"))
    )
    starts = dict.fromkeys(channels, 0)
    for log in logs:
        starts[log["channel_name"]] = max(log["latest"] - HISTORY_LENGTH, log["first"] - 1)
    return starts


class IndexView(AddWebSocketRouteToContextMixin, TemplateView):
    template_name = "websocket_app/index.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["rooms"] = rooms_for(self.request.user)
        return context


class RoomView(LoginRequiredMixin, AppChannelWebSocketMixin, TemplateView):
    """The chat page of one room; rooms the user may not join do not exist for them."""

    template_name = "websocket_app/room.html"
    # The chat's own login page, whatever LOGIN_URL the project has (Django's default,
    # /accounts/login/, does not exist here).
    login_url = "login"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        room = get_object_or_404(Room, slug=self.kwargs["channel"])
        if not room.admits(self.request.user):
            raise Http404("No such room")
        context = super().get_context_data(**kwargs)
        rooms = rooms_for(self.request.user)
        starts = replay_starts([other.slug for other in rooms])
        for other in rooms:
            other.replay_since = starts[other.slug]
        context.update(room=room, rooms=rooms)
        context["client_config"] = {
            "since": starts[room.slug],
            "url": context["websocket_url"],
            "channel": context["websocket_channel"],
            "tokenUrl": reverse("websocket_token"),
            "loginUrl": reverse("login"),
            "username": self.request.user.get_username(),
        }
        return context


class ChatLogoutView(LogoutView):
    """Log out back to the chat's login page: without a redirect, Django renders
    ``registration/logged_out.html``, which is the admin's "Logged out" page."""

    next_page = "login"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        # After logout(): the flushed session would lose a message stored in it before.
        messages.info(request, "You have logged out.", fail_silently=True)
        return response
