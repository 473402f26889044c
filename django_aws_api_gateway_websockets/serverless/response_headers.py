"""Response header values as API Gateway, ALB and emulators expect them: no padding.

Django's WSGI handler writes each cookie as ``cookie.output(header="")``, which starts with a
space (``" csrftoken=..."``). apig-wsgi passes that on: into HTTP API v2's ``cookies`` list and
into the ``Set-Cookie`` values of REST v1 and ALB ``multiValueHeaders``. The space is not part
of the value (RFC 9110 field values exclude surrounding whitespace); AWS trims it, but
serverless-offline takes `` csrftoken`` as the cookie's name and answers 500.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

WsgiApplication = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def trim_header_values(application: WsgiApplication) -> WsgiApplication:
    """WSGI wrapper: strip the whitespace around every response header value."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def trimmed_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            headers = [(name, value.strip()) for name, value in headers]
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        return application(environ, trimmed_start_response)

    return wrapped
