"""Static files: URLs that follow the request's stage prefix, and serving them in development.

A REST API's execute-api URL puts the stage in front of every path (``/dev/...``), and the
handler moves it into ``SCRIPT_NAME`` per request. Django adds the script prefix to a relative
``STATIC_URL`` only once, on first use, and caches it: the same function also serves URLs
without the prefix (a function URL, a custom domain), so whichever request came first would
decide for all. This storage adds the current request's prefix each time instead.

``runapigateway`` serves the files itself while ``DEBUG`` is on, as ``runserver`` does, so the
browser client loads in a new project with no WhiteNoise and no middleware.
"""

from __future__ import annotations

from typing import Any

from django.contrib.staticfiles.storage import StaticFilesStorage
from django.http import HttpRequest, HttpResponseBase
from django.urls import get_script_prefix


def with_script_prefix(url: str) -> str:
    """``url`` under the current script prefix, if it is a path from the root (``/static/x``);
    absolute URLs (a CDN) are left alone."""
    prefix = get_script_prefix()
    if prefix == "/" or not url.startswith("/") or url.startswith("//"):
        return url
    return prefix.rstrip("/") + url


class ScriptPrefixStaticFilesStorage(StaticFilesStorage):
    """``StaticFilesStorage`` whose URLs carry the request's script prefix.

    Use it with an absolute ``STATIC_URL`` such as ``"/static/"`` (a relative one would get
    the prefix of the first request baked in by Django as well)."""

    def url(self, name: str | None) -> str:
        return with_script_prefix(super().url(name))


def serving_static_files(application: Any) -> Any:
    """WSGI ``application`` with requests under ``STATIC_URL`` answered as ``runserver``
    answers them: from the apps' ``static/`` folders through the finders, no
    ``collectstatic``. Imported only when asked for: a Lambda cold start never needs it."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.contrib.staticfiles.views import serve

    class DevelopmentStaticFilesHandler(StaticFilesHandler):
        def serve(self, request: HttpRequest) -> HttpResponseBase:
            # Django's handler names the file by request.path, which carries SCRIPT_NAME
            # (/dev/static/...): the path below the stage prefix is what names it.
            return serve(request, self.file_path(request.path_info), insecure=True)

    return DevelopmentStaticFilesHandler(application)
