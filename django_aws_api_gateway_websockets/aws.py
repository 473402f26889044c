"""The AWS edge: boto3 clients, the region, the @connections endpoint, botocore's errors.

boto3 and botocore are imported only inside these functions: importing them costs ~0.7 s of
cold start that a CONNECT never needs.

``models.get_boto3_client`` and ``models.get_region_name`` are the documented names and the
patch point of the testing guide; they are thin wrappers of ``new_client`` and
``region_from_settings``. Library code that talks to AWS calls ``client()`` and ``region()``
below, which look those two names up in ``models`` at call time, so one ``mock.patch`` of
``django_aws_api_gateway_websockets.models.get_boto3_client`` intercepts sends, fan-out
dispatch and provisioning alike. That lookup is the only way from here to ``models``; nothing
else below ``models`` imports it.
"""

from __future__ import annotations

import os
import sys
import threading
from types import ModuleType
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .conf import websocket_setting
from .endpoints import execute_api_endpoint, execute_api_region

_SESSIONS: dict[tuple[Any, ...], Any] = {}
_SESSIONS_LOCK = threading.Lock()


def _patch_point() -> ModuleType:
    """The models module, where the patchable names live (it imports this module)."""
    from . import models

    return models


def client(service: str = "apigatewayv2", **kwargs: Any) -> Any:
    """``models.get_boto3_client(service, **kwargs)``, looked up now."""
    return _patch_point().get_boto3_client(service, **kwargs)


def invoke_client() -> Any:
    """A Lambda client for the library's asynchronous self-invocations (fan-out batches,
    replays), made through ``client()``: it fails fast, since a connect or a broadcast waits
    for the ``Invoke`` (botocore's defaults, a 60 s connect timeout and retries, would outlast
    API Gateway's 29 s when the function has no route to the Lambda API), and botocore does
    not retry: ``fanout_dispatch.invoke_async`` retries throttling itself."""
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=3, read_timeout=5
    )
    return client("lambda", config=config)


def factory_is_default() -> bool:
    """True while ``models.get_boto3_client`` is the library's own (not patched or replaced)."""
    factory = _patch_point().get_boto3_client
    return (
        getattr(factory, "__module__", None) == f"{__package__}.models"
        and getattr(factory, "__qualname__", None) == "get_boto3_client"
    )


def region() -> str:
    """``models.get_region_name()``, looked up now."""
    return _patch_point().get_region_name()


def region_from_settings() -> str:
    """``AWS_GATEWAY_REGION_NAME``, else ``AWS_REGION_NAME``; ``ImproperlyConfigured`` if
    neither is set."""
    name = getattr(settings, "AWS_GATEWAY_REGION_NAME", None) or getattr(
        settings, "AWS_REGION_NAME", None
    )
    if not name:
        raise ImproperlyConfigured(
            "No AWS region configured: set AWS_GATEWAY_REGION_NAME (or AWS_REGION_NAME) "
            "in your Django settings."
        )
    return name


def configured_region() -> str:
    """``region()``, or "" when none is configured."""
    try:
        return region()
    except ImproperlyConfigured:
        return ""


def _session_kwargs() -> dict[str, str]:
    """``AWS_IAM_PROFILE``; else both access keys (and ``AWS_SESSION_TOKEN``); else nothing,
    so boto3's default chain (the Lambda execution role) applies."""
    profile = getattr(settings, "AWS_IAM_PROFILE", None)
    access_key = getattr(settings, "AWS_ACCESS_KEY_ID", None)
    secret_key = getattr(settings, "AWS_SECRET_ACCESS_KEY", None)
    if profile:
        return {"profile_name": profile}
    if not (access_key and secret_key):
        return {}
    kwargs = {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key}
    session_token = getattr(settings, "AWS_SESSION_TOKEN", None)
    if session_token:
        kwargs["aws_session_token"] = session_token
    return kwargs


def new_client(service: str = "apigatewayv2", **kwargs: Any) -> Any:
    """A boto3 client for ``service`` with the credentials the settings name; ``region_name``
    defaults to ``region()``. Other keyword arguments go to ``Session.client``."""
    if "region_name" not in kwargs:  # not setdefault: that would demand a region regardless
        kwargs["region_name"] = region()
    with _SESSIONS_LOCK:
        return _session().client(service, **kwargs)


def credentials() -> Any:
    """The botocore credentials ``new_client`` signs with (None if boto3 finds none)."""
    with _SESSIONS_LOCK:
        return _session().get_credentials()


def _session() -> Any:
    """The boto3 Session of the settings' credentials; call it holding ``_SESSIONS_LOCK``.

    A Session loads endpoint and service data from disk (~100 ms of CPU): one is kept per
    credential set for the life of the process. Session.client is not thread-safe."""
    import boto3

    session_kwargs = _session_kwargs()
    if moto_is_mocking():
        # moto hooks the Sessions made after it was imported: a kept one may predate it.
        return boto3.session.Session(**session_kwargs)
    key = (boto3.session.Session, tuple(sorted(session_kwargs.items())))
    session = _SESSIONS.get(key)
    if session is None:
        session = _SESSIONS[key] = boto3.session.Session(**session_kwargs)
    return session


def management_endpoint_for(explicit_url: str, api_id: str, stage_name: str) -> str:
    """The @connections base URL: ``explicit_url`` if set, else the execute-api URL."""
    if explicit_url:
        return explicit_url.rstrip("/")
    if not api_id:
        raise ImproperlyConfigured(
            "The API Gateway has no api_id and no management_endpoint_url: cannot send."
        )
    return execute_api_endpoint(api_id, region(), stage_name)


def moto_is_mocking() -> bool:
    """True while moto's ``mock_aws`` intercepts botocore: then requests must go through it,
    on clients made while it is active (one made before it would reach the network)."""
    models = sys.modules.get("moto.core.models")
    stubber = getattr(models, "botocore_stubber", None)
    return bool(getattr(stubber, "enabled", False))


def management_client(endpoint_url: str) -> Any:
    """A client for the @connections API at ``endpoint_url`` (through ``client()``).

    A real botocore client is kept for the process (one per factory, endpoint, region, pool
    size and credential settings): building one costs ~3 ms, and a warm container sends often.
    ``models.get_boto3_client`` is still looked up on every call, so patching it (the testing
    guide does) intercepts every send; the mocks it returns are never kept.
    """
    from botocore.client import BaseClient
    from botocore.config import Config

    factory = _patch_point().get_boto3_client
    name = signing_region(endpoint_url)
    concurrency = max(10, int(websocket_setting("send_concurrency")))
    key = (factory, endpoint_url, name, concurrency, _credential_settings(), moto_is_mocking())
    cached = _MANAGEMENT_CLIENTS.get(key)
    if cached is not None:
        return cached
    config = Config(
        # Our own loop retries throttling; botocore's retries would multiply with it.
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=concurrency,
        # Fail fast (e.g. a VPC without a NAT route) instead of outliving the invocation.
        connect_timeout=5,
        read_timeout=10,
    )
    made = factory(
        "apigatewaymanagementapi", endpoint_url=endpoint_url, config=config, region_name=name
    )
    # Only the library's own clients are kept: what a patched factory returns (a mock, a
    # real client with a Stubber) is the test's, and must be asked for again each time.
    if isinstance(made, BaseClient) and factory_is_default():
        with _SESSIONS_LOCK:
            if len(_MANAGEMENT_CLIENTS) >= MAX_CACHED_CLIENTS:
                _MANAGEMENT_CLIENTS.clear()
            _MANAGEMENT_CLIENTS[key] = made
    return made


def forget_clients() -> None:
    """Drop every kept Session and client (and the credentials they resolved): before a
    SnapStart snapshot, so that no restored copy shares them. The next use builds new ones."""
    with _SESSIONS_LOCK:
        _SESSIONS.clear()
        _MANAGEMENT_CLIENTS.clear()


def signing_region(endpoint_url: str) -> str:
    """The region sends to ``endpoint_url`` are signed for: an execute-api URL's own; else
    (the local gateway, which checks it) the configured region, so a project without a
    region setting still sends locally: then ``us-east-1``."""
    return execute_api_region(endpoint_url) or configured_region() or "us-east-1"


def _credential_settings() -> tuple[Any, ...]:
    """The settings credentials are built from: a change means a new client."""
    names = ("AWS_IAM_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    return tuple(getattr(settings, name, None) for name in names)


# Real botocore clients are thread-safe once built.
_MANAGEMENT_CLIENTS: dict[tuple[Any, ...], Any] = {}
MAX_CACHED_CLIENTS = 64


def _forget_clients_after_fork() -> None:
    """A forked child starts without the parent's clients (their keep-alive sockets belong to
    the parent) and with a new lock (another thread may have held the parent's at the fork)."""
    global _SESSIONS_LOCK
    _SESSIONS_LOCK = threading.Lock()
    _SESSIONS.clear()
    _MANAGEMENT_CLIENTS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_clients_after_fork)


def errors() -> tuple[type[Exception], ...]:
    """botocore's two exception roots: an answer from AWS, or a fault before one."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


def client_error() -> type[Exception]:
    """botocore's ``ClientError`` (AWS answered with an error)."""
    from botocore.exceptions import ClientError

    return ClientError


def error_code(error: Exception) -> str:
    """``Error.Code`` of a ``ClientError`` ("" for anything else)."""
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def http_status(error: Exception) -> int | None:
    """The HTTP status of a ``ClientError``'s answer, if any."""
    response = getattr(error, "response", None) or {}
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def describe(error: Exception) -> str:
    """``Code: Message`` of a ``ClientError``, else the error's text."""
    response = getattr(error, "response", None) or {}
    details = response.get("Error", {})
    if details:
        return f"{details.get('Code', 'Error')}: {details.get('Message', '')}".strip()
    return str(error)
