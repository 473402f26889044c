"""Register a local emulator's WebSocket API (serverless-offline by default) as a gateway."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from django_aws_api_gateway_websockets.mixins import AddWebSocketRouteToContextMixin
from django_aws_api_gateway_websockets.models import ApiGateway

# What serverless-offline 13 puts in every WebSocket event, and where it listens by default.
OFFLINE_API_ID = "private"
OFFLINE_STAGE = "local"
OFFLINE_URL = "ws://localhost:3001"
MANAGEMENT_SCHEMES = {"ws": "http", "wss": "https"}


class Command(BaseCommand):
    help = (
        "Create or update the ApiGateway record of a local emulator, so its $connect events "
        "find a gateway and sends reach its @connections API. The defaults are "
        "serverless-offline's: api id 'private', stage 'local', ws://localhost:3001."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--url", default=OFFLINE_URL, help="The emulator's WebSocket address (no path)."
        )
        parser.add_argument("--api-id", default=OFFLINE_API_ID, help="requestContext.apiId.")
        parser.add_argument("--stage", default=OFFLINE_STAGE, help="requestContext.stage.")
        parser.add_argument(
            "--management-url",
            default="",
            help="The @connections base URL. Default: --url with http(s), no path.",
        )
        parser.add_argument("--name", default="", help="api_name. Default: 'Local <api id>'.")

    def handle(self, *args: Any, **options: Any) -> None:
        websocket_url = options["url"].rstrip("/")
        parts = urlsplit(websocket_url)
        if parts.scheme not in MANAGEMENT_SCHEMES or not parts.hostname or parts.path:
            raise CommandError(
                f"--url must be ws://HOST:PORT or wss://HOST:PORT, not {options['url']!r}."
            )
        management_url = options["management_url"].rstrip("/") or (
            f"{MANAGEMENT_SCHEMES[parts.scheme]}://{parts.netloc}"
        )
        if urlsplit(management_url).scheme not in ("http", "https"):
            raise CommandError(f"--management-url must be an http(s) URL, not {management_url!r}.")
        api_id, stage = options["api_id"], options["stage"]
        if not api_id or not stage:
            raise CommandError("--api-id and --stage must not be empty.")
        name = options["name"] or f"Local {api_id}"
        try:
            record = ApiGateway.register_local(api_id, name, stage, websocket_url, management_url)
        except IntegrityError:
            raise CommandError(f"Another gateway is named {name!r}: pass --name.") from None
        except ValidationError as error:
            problems = "; ".join(
                f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items()
            )
            raise CommandError(f"Not a name AWS accepts ({problems}).") from None
        page_url = AddWebSocketRouteToContextMixin().get_websocket_url()
        self.stdout.write(
            self.style.SUCCESS(f"Registered {record.api_name!r} (pk {record.pk}, api id {api_id}).")
        )
        self.stdout.write(f"  WebSocket:    {websocket_url}/{stage}")
        self.stdout.write(f"  @connections {management_url}/@connections/{{id}}")
        if page_url != f"{websocket_url}/{stage}":
            self.stdout.write(
                self.style.WARNING(
                    f"Pages using the template mixins connect to {page_url or 'nothing'}: an "
                    f"older gateway comes first. Set websocket_api_name = {record.api_name!r} "
                    "on the view, or use a database of its own for local work."
                )
            )
