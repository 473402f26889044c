from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand

from django_aws_api_gateway_websockets.models import ApiGateway
from websocket_app.models import Room

SAMPLE_API_ID = "a1b2c3d4e5"
DEMO_USERS = ("demo", "alice", "bob")
DEMO_ROOMS = (("general", "General", False), ("random", "Random", False), ("staff", "Staff", True))


class Command(BaseCommand):
    help = "Create demo users (password = username) and rooms for trying the chat locally."

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        chat_permission = Permission.objects.get(codename="can_use_chat")
        users = {}
        for username in DEMO_USERS:
            user, created = user_model.objects.get_or_create(username=username)
            if created:
                user.set_password(username)
                user.is_staff = user.is_superuser = username == "demo"
                user.save()
            user.user_permissions.add(chat_permission)
            users[username] = user
        for slug, title, private in DEMO_ROOMS:
            room, _ = Room.objects.get_or_create(
                slug=slug, defaults={"title": title, "is_private": private}
            )
            if private:
                room.members.add(users["demo"])
        # The API the sample events in events/ come from, so `manage.py invoke` can use them.
        ApiGateway.objects.get_or_create(
            api_id=SAMPLE_API_ID,
            defaults={"api_name": "Sample events", "stage_name": "production"},
        )
        self.stdout.write(
            "Demo users: demo/demo (admin), alice/alice, bob/bob; rooms: general, random, "
            "staff (private, demo only)."
        )
