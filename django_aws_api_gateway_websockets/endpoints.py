"""Management API (@connections) endpoint URLs. Pure functions: no Django, no boto3."""

from __future__ import annotations

import re

EXECUTE_API_DOMAIN = re.compile(r"^[a-z0-9]+\.execute-api\.[a-z0-9-]+\.amazonaws\.com$")


def execute_api_endpoint(api_id: str, region: str, stage: str) -> str:
    return f"https://{api_id}.execute-api.{region}.amazonaws.com/{stage}"


def endpoint_from_event(domain_name: str, api_id: str, stage: str, region: str) -> str:
    """The endpoint for replies to a connection, from its event's domain and stage.

    An execute-api domain is used as is; a custom domain maps to the execute-api URL of the
    same API and stage (its base-path mapping is not in the event). Returns "" when the event
    does not say enough.
    """
    domain = domain_name.lower()
    if not (domain and api_id and stage):
        return ""
    if EXECUTE_API_DOMAIN.match(domain):
        return f"https://{domain}/{stage}"
    return execute_api_endpoint(api_id, region, stage) if region else ""
