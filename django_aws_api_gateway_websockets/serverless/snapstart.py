"""Lambda SnapStart: what must not be in a snapshot, and what a restored copy renews.

With SnapStart, Lambda runs the init phase once when a version is published, snapshots the
memory of the process and starts every cold execution environment from a copy of it. Anything
live at that moment would be shared by all the copies: database connections, the boto3
clients (and the credentials they resolved), the keep-alive connections and event loop of the
fan-out, cached signing keys, the send-rate bucket (its clock readings and queue), and
``random``'s state (every copy would draw the same retry jitter). ``before_snapshot`` drops
all of it (after a rehearsal of the first events, when asked: ``snapstart_rehearsal.py``);
``after_restore`` reseeds ``random`` and makes the copy's first event log as a cold start.
Everything else is rebuilt lazily by its first use, as in a fresh process.

The hooks are registered through ``snapshot_restore_py`` (part of Lambda's Python runtimes)
when it can be imported; Lambda's runtime runs them only when SnapStart is on, so they cost
nothing elsewhere.
"""

from __future__ import annotations

import gc
import importlib
import logging
import random
import sys
import types
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

# Code worth having in the snapshot: the first send after a restore then skips importing it.
# Only modules: nothing here opens a connection or resolves credentials.
PRELOADED_MODULES = (
    "django_aws_api_gateway_websockets.sending",
    "boto3",
    "botocore.client",
)

_registered = False
# The handler make_lambda_handler built last: what a rehearsal plays its events through.
_handler: Callable[[Any, Any], Any] | None = None


def before_snapshot() -> None:
    """Load what the first events would load, then close and forget everything a restored
    copy must not share. A failed preload only costs speed: it never stops the snapshot."""
    try:
        preload()
    except Exception:
        logger.warning("Preloading before the SnapStart snapshot failed", exc_info=True)
    _rehearse_if_asked()
    from django.db import connections

    connections.close_all()
    aws = sys.modules.get("django_aws_api_gateway_websockets.aws")
    if aws is not None:
        aws.forget_clients()
    transport = sys.modules.get("django_aws_api_gateway_websockets.connections_http")
    if transport is not None:
        transport.close_shared_transport()
    # A bucket's clock readings and debt are this process's: each copy starts a full one.
    send_rate = sys.modules.get("django_aws_api_gateway_websockets.send_rate")
    if send_rate is not None:
        send_rate.forget_limiter()
    # What init and the preloading built lives as long as every copy: out of the collector's
    # sight, or each copy's first collections would walk (and copy-on-write touch) all of it.
    gc.collect()
    gc.freeze()


def preload() -> None:
    """Import now what a fresh process imports during its first events (the URLconf and the
    views and admin URLs it builds, the session, message and auth machinery, the send path),
    so that a restored copy does not. Code only: no connection, no credentials."""
    from django.conf import settings
    from django.contrib.auth import get_backends
    from django.urls import Resolver404, get_resolver

    from ..conf import websocket_setting

    resolver = get_resolver()
    resolver.url_patterns  # noqa: B018 (imports ROOT_URLCONF and what it includes)
    # Resolving compiles the patterns' regular expressions on the way (Django does it lazily).
    for route in ("connect", "default", "disconnect"):
        try:
            resolver.resolve(str(websocket_setting("websocket_path")).replace("{route}", route))
        except Resolver404:
            logger.debug("No view at the WebSocket path for %s", route)
    get_backends()
    _fill_model_caches()
    _compile_lazy_patterns()
    names = [*PRELOADED_MODULES, "django.db.models.sql.compiler"]
    if getattr(settings, "SESSION_ENGINE", None):
        names.append(settings.SESSION_ENGINE)
    for setting in ("SESSION_SERIALIZER", "MESSAGE_STORAGE"):
        if getattr(settings, setting, None):
            names.append(getattr(settings, setting).rpartition(".")[0])
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:  # boto3 is the runtime's; a project may not use messages
            logger.debug("Not preloaded before the snapshot: %s", name)


def after_restore() -> None:
    """Give this copy its own random state (``secrets`` and ``uuid`` read the OS and need none),
    and log its first event as the cold start it is, whatever a rehearsal played before."""
    random.seed()
    mark_cold_start = getattr(_handler, "mark_cold_start", None)
    if mark_cold_start is not None:
        mark_cold_start()


def _rehearse_if_asked() -> None:
    """``WEBSOCKETS["snapstart_rehearsal"]``: play the first events before the snapshot."""
    from ..conf import websocket_setting
    from . import snapstart_rehearsal

    try:
        if _handler is None or not websocket_setting("snapstart_rehearsal"):
            return
        reason = snapstart_rehearsal.why_not(_handler)
        if reason:
            logger.warning("No SnapStart rehearsal: %s", reason)
            return
        rehearsal = snapstart_rehearsal.rehearse(_handler)
    except Exception:
        logger.warning("The SnapStart rehearsal failed", exc_info=True)
        return
    if not rehearsal.answered:
        # Refused events rehearse less of the path; the view's reason is in the body.
        logger.warning(
            "The SnapStart rehearsal's events were answered %s, the first refusal with %s",
            rehearsal.statuses,
            rehearsal.first_refusal,
        )


def register_hooks(handler: Callable[[Any, Any], Any] | None = None) -> bool:
    """Register the hooks with ``snapshot_restore_py``, once; False when it is not installed.
    ``handler``: what a rehearsal plays its events through (the latest one given)."""
    global _registered, _handler
    if handler is not None:
        _handler = handler
    if _registered:
        return True
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(before_snapshot)
    register_after_restore(after_restore)
    _registered = True
    return True


def _fill_model_caches() -> None:
    """Django fills each model's field maps on first use; do it now, once for every copy."""
    from django.apps import apps

    for model in apps.get_models(include_auto_created=True):
        options = model._meta
        options.get_fields()
        options.concrete_fields  # noqa: B018
        options.local_concrete_fields  # noqa: B018
        options.db_returning_fields  # noqa: B018
        options.fields_map  # noqa: B018
        options.managers  # noqa: B018


def _compile_lazy_patterns() -> None:
    """Compile the regular expressions Django's modules leave for their first use (host
    validation, the SQLite placeholder rewrite, signing...): ~4 ms in a first request."""
    from django.utils import regex_helper
    from django.utils.functional import SimpleLazyObject, empty

    for module in list(sys.modules.values()):
        # Real modules only (a LazyLoader's module would run on being read), Django's only.
        if type(module) is not types.ModuleType or not module.__name__.startswith("django"):
            continue
        for value in list(vars(module).values()):
            # type(), not isinstance(): a lazy object answers __class__ by evaluating itself.
            if type(value) is not SimpleLazyObject:
                continue
            setup = object.__getattribute__(value, "_setupfunc")
            wrapped = object.__getattribute__(value, "_wrapped")
            if wrapped is empty and getattr(setup, "__module__", None) == regex_helper.__name__:
                value._setup()
