from __future__ import annotations

import contextlib
import importlib
import io
import json
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from django_aws_api_gateway_websockets.serverless.local import (
    LocalLambdaContext,
    authenticate_connect_event,
)


class Command(BaseCommand):
    help = (
        "Run the Lambda handler on a sample event file (like `sam local invoke`) and print "
        "its response and log lines."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("event_file", help="A JSON event, e.g. events/connect.json.")
        parser.add_argument(
            "--handler",
            default="lambda_handler.handler",
            help="Dotted path of the handler (default: lambda_handler.handler).",
        )
        parser.add_argument(
            "--as",
            dest="username",
            help="For CONNECT events: log this user in and add a fresh ws_token.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        event = self.load_event(Path(options["event_file"]))
        if options["username"]:
            event = authenticate_connect_event(event, self.load_user(options["username"]))
        handler = self.load_handler(options["handler"])
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            response = handler(event, LocalLambdaContext())
        self.stdout.write("Response:")
        self.stdout.write(json.dumps(response, indent=2, default=str))
        self.stdout.write("Logs:")
        for line in captured.getvalue().splitlines():
            self.stdout.write(f"  {line}")

    def load_event(self, path: Path) -> dict[str, Any]:
        try:
            event = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}") from None
        except ValueError as error:
            raise CommandError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(event, dict):
            raise CommandError(f"{path} must hold a JSON object.")
        return event

    def load_user(self, username: str) -> Any:
        user_model = get_user_model()
        try:
            return user_model.objects.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"No user {username!r}.") from None

    def load_handler(self, dotted_path: str) -> Any:
        module_name, _, attribute = dotted_path.rpartition(".")
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError, ValueError):
            raise CommandError(f"Cannot import the handler {dotted_path!r}.") from None
