"""Checking ``@connections`` requests as API Gateway does: Signature Version 4 for the
``execute-api`` service in one region, by one identity (the project's own credentials).

AWS refuses an unsigned or wrongly signed management request with 403; an emulator that
accepts anything lets a send that would fail on AWS (no credentials, the wrong region, a
hand-made request) pass locally, and lets any local process post to any connection. The
expected signature is computed by botocore's own signer from the request as received, so
whatever boto3 (or the library's HTTP fan-out) signs the way AWS checks, passes here.

Not checked, as there is no IAM here: whether the identity may ``execute-api:ManageConnections``.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .http import Request

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "execute-api"
# AWS accepts a request signed up to 5 minutes before or after its own clock.
MAX_SKEW_SECONDS = 5 * 60
AMZ_DATE = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Refusal:
    """A 403 as AWS words it (``error_type`` goes in ``x-amzn-ErrorType``), and the detail
    for the gateway's log line, which the client is not told."""

    error_type: str
    message: str
    detail: str


MISSING = "MissingAuthenticationTokenException"
INCOMPLETE = "IncompleteSignatureException"
INVALID = "InvalidSignatureException"
UNRECOGNIZED = "UnrecognizedClientException"
MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
UNRECOGNIZED_MESSAGE = "The security token included in the request is invalid."


class SignatureCheck:
    """``refusal(request)``: None for a request signed with ``credentials`` for ``region``.

    ``credentials`` are botocore's (what ``Session.get_credentials()`` returns), frozen on
    each request so refreshable ones (a role, SSO) rotate as the project's clients do.
    """

    def __init__(
        self,
        credentials: Any,
        region: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credentials = credentials
        self.region = region
        self.clock = clock

    def refusal(self, request: Request) -> Refusal | None:
        authorization = request.header("Authorization")
        if not authorization:
            return Refusal(MISSING, "Missing Authentication Token", "no Authorization header")
        fields = _authorization_fields(authorization)
        if fields is None:
            return _incomplete(f"not an {ALGORITHM} Authorization header")
        scope = fields["Credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            return _incomplete("Credential is not KEY/DATE/REGION/SERVICE/aws4_request")
        access_key, day, region, service, _ = scope
        signed_headers = fields["SignedHeaders"].lower().split(";")
        if "host" not in signed_headers:
            return _incomplete("Host is not a signed header")
        amz_date = request.header("X-Amz-Date")
        if not amz_date:
            return _incomplete("no X-Amz-Date header")
        expected = self.credentials.get_frozen_credentials()
        if access_key != expected.access_key:
            return Refusal(
                UNRECOGNIZED,
                UNRECOGNIZED_MESSAGE,
                f"access key {_masked(access_key)} is not the project's "
                f"({_masked(expected.access_key)})",
            )
        if (request.header("X-Amz-Security-Token") or None) != (expected.token or None):
            return Refusal(UNRECOGNIZED, UNRECOGNIZED_MESSAGE, "session token differs")
        if service != SERVICE:
            return _invalid(f"Credential should be scoped to correct service: '{SERVICE}'.")
        if region != self.region:
            return _invalid(
                "Credential should be scoped to a valid region.",
                f"signed for region {region!r}, this gateway's is {self.region!r}",
            )
        stale = self._clock_problem(amz_date, day)
        if stale:
            return _invalid(stale)
        declared = request.header("X-Amz-Content-SHA256")
        if declared and declared != hashlib.sha256(request.body).hexdigest():
            return _invalid(MISMATCH_MESSAGE, "X-Amz-Content-SHA256 is not the body's hash")
        signature = self._signature(request, signed_headers, amz_date, expected)
        if not hmac.compare_digest(signature.encode(), fields["Signature"].encode("latin-1")):
            return _invalid(MISMATCH_MESSAGE, "signature mismatch (secret key, body or path)")
        return None

    def _clock_problem(self, amz_date: str, day: str) -> str:
        try:
            signed_at = calendar.timegm(time.strptime(amz_date, AMZ_DATE))
        except ValueError:
            return f"X-Amz-Date {amz_date!r} is not in ISO 8601 basic format (YYYYMMDDTHHMMSSZ)."
        if amz_date[:8] != day:
            return (
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                "date from HTTP."
            )
        now = self.clock()
        if signed_at < now - MAX_SKEW_SECONDS:
            return f"Signature expired: {amz_date} is now earlier than {_stamp(now - 300)}."
        if signed_at > now + MAX_SKEW_SECONDS:
            return f"Signature not yet current: {amz_date} is still later than {_stamp(now + 300)}."
        return ""

    def _signature(
        self, request: Request, signed_headers: list[str], amz_date: str, credentials: Any
    ) -> str:
        """What botocore's signer makes of this request, as received, with the headers the
        client says it signed."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        host = request.header("Host")
        wanted = set(signed_headers)
        aws_request = AWSRequest(
            method=request.method, url=f"http://{host}{request.target}", data=request.body
        )
        for name, value in request.headers:
            if name.lower() in wanted:
                aws_request.headers[name] = value  # appends: repeated headers keep every value
        aws_request.context["timestamp"] = amz_date
        signer = SigV4Auth(credentials, SERVICE, self.region)
        canonical = signer.canonical_request(aws_request)
        return signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)


def _authorization_fields(header: str) -> dict[str, str] | None:
    """``Credential``, ``SignedHeaders`` and ``Signature`` of a SigV4 Authorization header."""
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        return None
    fields = {}
    for part in rest.split(","):
        name, separator, value = part.strip().partition("=")
        if separator:
            fields[name] = value
    wanted = ("Credential", "SignedHeaders", "Signature")
    if not all(fields.get(name) for name in wanted):
        return None
    return fields


def _incomplete(detail: str) -> Refusal:
    message = (
        "Authorization header requires 'Credential', 'Signature', 'SignedHeaders' parameters "
        "and an 'X-Amz-Date' header, with 'Host' signed."
    )
    return Refusal(INCOMPLETE, message, detail)


def _invalid(message: str, detail: str = "") -> Refusal:
    return Refusal(INVALID, message, detail or message)


def _stamp(moment: float) -> str:
    return time.strftime(AMZ_DATE, time.gmtime(moment))


def _masked(access_key: str) -> str:
    """Enough of an access key id to tell two apart in a log line, not the whole id."""
    return f"{access_key[:4]}…{access_key[-2:]}" if len(access_key) > 8 else "…"
