"""The request headers API Gateway adds, for tests that post to a WebSocket view directly.

Names, signatures and values are the testing guide's, so its examples run unchanged.
"""

from __future__ import annotations

DEFAULT_API_ID = "abc123"
DEFAULT_CONNECTION_ID = "connection-1"
TEST_HOST = "testserver"


def api_gateway_headers(
    api_id: str = DEFAULT_API_ID, connection_id: str = DEFAULT_CONNECTION_ID
) -> dict[str, str]:
    """What every event carries (Django test client ``**extra`` form)."""
    return {
        "HTTP_HOST": TEST_HOST,
        "HTTP_X_FORWARDED_FOR": "127.0.0.1",
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_CONNECTIONID": connection_id,
        "HTTP_USER_AGENT": f"AmazonAPIGateway_{api_id}",
        "HTTP_X_AMZN_APIGATEWAY_API_ID": api_id,
        "HTTP_X_AMZN_TRACE_ID": "Root=1-test",
        "HTTP_X_FORWARDED_PORT": "443",
        "HTTP_X_REAL_IP": "127.0.0.1",
    }


def api_gateway_connect_headers(
    api_id: str = DEFAULT_API_ID, connection_id: str = DEFAULT_CONNECTION_ID
) -> dict[str, str]:
    """``api_gateway_headers`` plus what a browser's handshake adds.

    The fixed ``HTTP_COOKIE`` replaces the test client's own cookies: delete it to connect
    with a logged-in client's session."""
    headers = api_gateway_headers(api_id=api_id, connection_id=connection_id)
    headers["HTTP_COOKIE"] = "sessionid=test"
    headers["HTTP_ORIGIN"] = f"https://{TEST_HOST}"
    headers["HTTP_SEC_WEBSOCKET_EXTENSIONS"] = "permessage-deflate"
    headers["HTTP_SEC_WEBSOCKET_KEY"] = "test-key"
    headers["HTTP_SEC_WEBSOCKET_VERSION"] = "13"
    return headers
