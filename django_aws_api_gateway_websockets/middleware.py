"""Request middleware for hosts that change the request path before Django sees it."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import is_valid_path


class RestoreTrailingSlashMiddleware:
    """Serve ``/rooms/general`` as ``/rooms/general/`` when only the latter is a URL.

    serverless-offline (13.x) strips the trailing slash of every HTTP path, so Django's
    ``APPEND_SLASH`` redirect to ``/rooms/general/`` comes back as ``/rooms/general`` and loops
    (and a POST to ``/api/ws-token/`` would lose its body to the redirect). This rewrites the
    path in place instead of redirecting. Put it before ``CommonMiddleware``, and only where
    the host strips slashes: elsewhere ``APPEND_SLASH``'s redirect is the better answer.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if settings.APPEND_SLASH and not path.endswith("/"):
            urlconf = getattr(request, "urlconf", None)
            if not is_valid_path(path, urlconf) and is_valid_path(f"{path}/", urlconf):
                request.path_info = f"{path}/"
                request.path = f"{request.path}/"
                request.META["PATH_INFO"] = f"{request.META.get('PATH_INFO', path)}/"
        return self.get_response(request)
