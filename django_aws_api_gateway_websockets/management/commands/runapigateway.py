from __future__ import annotations

import asyncio
import os
import re
import signal
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from django_aws_api_gateway_websockets import aws, naming
from django_aws_api_gateway_websockets.conf import websocket_setting
from django_aws_api_gateway_websockets.local_gateway import (
    GatewayLimits,
    LocalApiGateway,
    SignatureCheck,
)
from django_aws_api_gateway_websockets.models import ApiGateway, ApiGatewayAdditionalRoute
from django_aws_api_gateway_websockets.serverless import make_lambda_handler
from django_aws_api_gateway_websockets.serverless.local import LocalLambdaContext

LOCAL_API_ID = "local"
LOCAL_API_NAME = "Local API Gateway"
SLUG = re.compile(r"[A-Za-z0-9_-]+")


class Command(BaseCommand):
    help = (
        "Emulate API Gateway WebSockets locally: a WebSocket endpoint, the @connections API and "
        "the Django site, all on one port and all through the Lambda handler (the site and the "
        "socket on two host names with --socket-host, as on AWS)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--stage", default="local")
        parser.add_argument(
            "--socket-host",
            default="",
            help="Host name pages are told to open the WebSocket on (default: --host). Another "
            "name for the same address, e.g. localhost for 127.0.0.1, keeps the site's cookies "
            "and origin off the socket, as on AWS.",
        )
        parser.add_argument(
            "--site-stage",
            default="",
            help="Serve the site under /SITE_STAGE/, as zappa's REST API URL does (e.g. dev).",
        )
        parser.add_argument(
            "--idle-timeout",
            type=float,
            default=None,
            help="Seconds without a frame from the client before its socket is closed with 1001 "
            "(AWS: 600); also WEBSOCKETS['local_gateway_idle_timeout'].",
        )
        parser.add_argument(
            "--max-duration",
            type=float,
            default=None,
            help="Seconds a connection may live before its socket is closed with 1001 "
            "(AWS: 7200); also WEBSOCKETS['local_gateway_max_duration'].",
        )
        parser.add_argument("--workers", type=int, default=8, help="Concurrent invocations.")
        parser.add_argument(
            "--nostatic",
            action="store_false",
            dest="use_static_handler",
            help="Do not serve static files, even with DEBUG on (as runserver --nostatic).",
        )
        parser.add_argument(
            "--no-verify-signature",
            action="store_false",
            dest="verify_signature",
            help="Accept @connections requests without a valid SigV4 signature (AWS refuses "
            "them with 403); also WEBSOCKETS['local_gateway_verify_signature'] = False.",
        )
        parser.add_argument(
            "--insecure",
            action="store_true",
            help="Serve static files even with DEBUG off (as runserver --insecure).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["idle_timeout"] is None:
            options["idle_timeout"] = seconds_setting("local_gateway_idle_timeout")
        if options["max_duration"] is None:
            options["max_duration"] = seconds_setting("local_gateway_max_duration")
        if options["idle_timeout"] <= 0 or options["max_duration"] <= 0:
            raise CommandError("--idle-timeout and --max-duration must be positive.")
        stage_problem = naming.stage_name_problem(options["stage"])
        if stage_problem:
            raise CommandError(f"--stage: {stage_problem}")
        site_stage = options["site_stage"]
        if site_stage and (not SLUG.fullmatch(site_stage) or site_stage == options["stage"]):
            raise CommandError(
                "--site-stage must be a name of letters, digits, - and _, other than --stage."
            )
        # boto3 refuses to sign without credentials: dummy ones, unless the project has its
        # own. Whichever they are, they are what @connections then expects.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        check = signature_check(options)
        handler = make_lambda_handler(serve_static=serves_static_files(options))
        gateway = LocalApiGateway(
            handler,
            host=options["host"],
            port=options["port"],
            stage=options["stage"],
            api_id=LOCAL_API_ID,
            route_config=route_config,
            limits=GatewayLimits(
                idle_timeout=options["idle_timeout"],
                max_connection_duration=options["max_duration"],
            ),
            workers=options["workers"],
            context_factory=LocalLambdaContext,
            socket_host=options["socket_host"] or None,
            site_stage=options["site_stage"],
            signature_check=check,
        )
        try:
            asyncio.run(self.serve(gateway))
        except OSError as error:
            raise CommandError(
                f"Cannot listen on {options['host']}:{options['port']}: {error}"
            ) from None

    async def serve(self, gateway: LocalApiGateway) -> None:
        await gateway.start()
        await asyncio.get_running_loop().run_in_executor(None, register_local_gateway, gateway)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        self.stdout.write(
            f"Local API Gateway ready.\n"
            f"  Site:        {gateway.site_url}\n"
            f"  WebSocket:   {gateway.websocket_url}\n"
            f"  @connections {gateway.management_url}/@connections/{{id}}\n"
            f"  Signatures:  {describe_check(gateway.signature_check)}\n"
            "Press Ctrl-C to stop.",
            ending="\n",
        )
        self.stdout.flush()
        await stopping.wait()
        self.stdout.write("Stopping: closing connections (each gets its $disconnect)...")
        await gateway.stop()
        self.stdout.write("Stopped.")


def seconds_setting(name: str) -> float:
    """``WEBSOCKETS[name]`` as seconds; a clear error if it is not."""
    value = websocket_setting(name)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CommandError(
            f"WEBSOCKETS[{name!r}] must be a number of seconds, not {value!r}."
        ) from None


def signature_check(options: dict[str, Any]) -> SignatureCheck | None:
    """How @connections requests are verified: SigV4 with the credentials and region the
    project's own sends use, unless the flag or the setting turns it off."""
    if not (options["verify_signature"] and websocket_setting("local_gateway_verify_signature")):
        return None
    from botocore.exceptions import BotoCoreError

    try:
        found = aws.credentials()
        if found is not None:
            found.get_frozen_credentials()
    except BotoCoreError as error:
        raise CommandError(
            f"Cannot load the project's AWS credentials to verify @connections requests: "
            f"{error}. Fix AWS_IAM_PROFILE / the AWS_* settings, or pass --no-verify-signature."
        ) from None
    if found is None:
        raise CommandError(
            "No AWS credentials to verify @connections requests with: set AWS_ACCESS_KEY_ID "
            "and AWS_SECRET_ACCESS_KEY (any values), or pass --no-verify-signature."
        )
    region = aws.signing_region(f"http://{options['host']}/{options['stage']}")
    return SignatureCheck(found, region)


def describe_check(check: SignatureCheck | None) -> str:
    if check is None:
        return "not verified (turned off)"
    key = check.credentials.get_frozen_credentials().access_key
    return f"SigV4 verified (execute-api, {check.region}, access key {key})"


def serves_static_files(options: dict[str, Any]) -> bool:
    """Whether the emulator answers ``STATIC_URL`` itself: runserver's rule (DEBUG, or
    ``--insecure``; never with ``--nostatic`` or without ``django.contrib.staticfiles``)."""
    if not options["use_static_handler"]:
        return False
    if not apps.is_installed("django.contrib.staticfiles"):
        return False
    if not (settings.DEBUG or options["insecure"]):
        return False
    from django.contrib.staticfiles.utils import check_settings

    try:
        check_settings()  # what runserver's handler checks first: STATIC_URL set, not MEDIA_URL
    except ImproperlyConfigured as error:
        raise CommandError(f"{error} (or pass --nostatic)") from None
    return True


def register_local_gateway(gateway: LocalApiGateway) -> ApiGateway:
    """Point the local ApiGateway record at this emulator, so the library's sends reach it."""
    return ApiGateway.register_local(
        LOCAL_API_ID,
        LOCAL_API_NAME,
        gateway.stage,
        f"ws://{gateway.socket_host}:{gateway.port}",
        gateway.management_url,
    )


def route_config() -> tuple[str, set[str]]:
    """The local gateway's route selection expression and custom route keys, read fresh."""
    record = ApiGateway.objects.filter(api_id=LOCAL_API_ID).first()
    if record is None:
        return "$request.body.action", {"$default"}
    keys = set(
        ApiGatewayAdditionalRoute.objects.filter(api_gateway=record).values_list(
            "route_key", flat=True
        )
    )
    return record.route_selection_expression, keys | {record.route_key}
