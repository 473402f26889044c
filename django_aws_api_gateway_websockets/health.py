"""A health answer that needs a booted function and a reachable database, not migrated tables.

zappa's deploy (and update) GETs ``touch_path`` once the function exists and reports failure
on any 5xx. Migrations can only run after that, through the function itself, so the page it
checks must not read tables: this view connects to the database and queries none.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views import View

logger = logging.getLogger(__name__)


class HealthView(View):
    """``GET``: 200 ``{"status": "ok"}``; 503 ``{"status": "database unavailable"}``."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        try:
            connection.ensure_connection()
        except DatabaseError as error:
            logger.error("Health check: database unavailable (check DATABASE_URL): %s", error)
            return JsonResponse({"status": "database unavailable"}, status=503)
        return JsonResponse({"status": "ok"})
