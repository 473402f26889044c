from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils.text import slugify

from websocket_app.models import Room


class Command(BaseCommand):
    help = (
        "Create chat rooms (safe in production: no users, existing rooms are left as they "
        "are). Each room is SLUG or SLUG=Title."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("rooms", nargs="+", metavar="SLUG[=Title]")
        parser.add_argument(
            "--private", action="store_true", help="Members only (add them in the admin)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        rooms = [spec.partition("=")[::2] for spec in options["rooms"]]
        for slug, _ in rooms:  # all checked before any is created
            if not slug or slugify(slug) != slug:
                raise CommandError(f"{slug!r} is not a slug (lowercase letters, digits, -, _).")
        created, existing = [], []
        for slug, title in rooms:
            _, was_created = Room.objects.get_or_create(
                slug=slug,
                defaults={"title": title or slug.title(), "is_private": options["private"]},
            )
            (created if was_created else existing).append(slug)
        self.stdout.write(
            self.style.SUCCESS(
                f"Rooms created: {', '.join(created) or 'none'}; "
                f"already there: {', '.join(existing) or 'none'}."
            )
        )
