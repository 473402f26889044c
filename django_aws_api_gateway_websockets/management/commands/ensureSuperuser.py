from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_aws_api_gateway_websockets.superuser import SuperuserError, ensure_superuser


class Command(BaseCommand):
    help = (
        "Create the superuser, or make an existing user one, without prompting (for "
        "`zappa manage`). Username and email from the options or DJANGO_SUPERUSER_USERNAME / "
        "DJANGO_SUPERUSER_EMAIL; the password only from DJANGO_SUPERUSER_PASSWORD."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="", help="Default: $DJANGO_SUPERUSER_USERNAME.")
        parser.add_argument("--email", default="", help="Default: $DJANGO_SUPERUSER_EMAIL.")
        parser.add_argument(
            "--reset-password",
            action="store_true",
            help="Also set an existing user's password from $DJANGO_SUPERUSER_PASSWORD.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            outcome = ensure_superuser(
                options["username"], options["email"], reset_password=options["reset_password"]
            )
        except SuperuserError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(self.style.SUCCESS(str(outcome)))
