"""Chat rooms and their messages. A room's slug is the WebSocket channel name."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class Room(models.Model):
    slug = models.SlugField(max_length=100, unique=True, help_text="Also the channel name.")
    title = models.CharField(max_length=200)
    is_private = models.BooleanField(
        default=False, help_text="Private rooms admit only their members."
    )
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="rooms")

    class Meta:
        ordering = ["slug"]
        permissions = [("can_use_chat", "Can use the restricted chat handler")]

    def __str__(self) -> str:
        return self.title or self.slug

    def admits(self, user: Any) -> bool:
        """Public rooms admit everyone; private rooms only their authenticated members."""
        if not self.is_private:
            return True
        return bool(user and user.is_authenticated) and self.members.filter(pk=user.pk).exists()


class ChatMessage(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    text = models.TextField(max_length=2000)
    created_on = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_on", "pk"]

    def __str__(self) -> str:
        return f"{self.room.slug}: {self.text[:40]}"

    def as_event(self) -> dict[str, Any]:
        """The message as the browser client receives it."""
        return {
            "type": "chat_message",
            "room": self.room.slug,
            "user": self.user.get_username() if self.user else "anonymous",
            "message": self.text,
            "created_on": self.created_on.isoformat(),
        }
