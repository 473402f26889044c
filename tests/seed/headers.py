"""The testing guide's header helpers, verbatim."""


def api_gateway_headers(api_id="abc123", connection_id="connection-1"):
    return {
        "HTTP_HOST": "testserver",
        "HTTP_X_FORWARDED_FOR": "127.0.0.1",
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_CONNECTIONID": connection_id,
        "HTTP_USER_AGENT": f"AmazonAPIGateway_{api_id}",
        "HTTP_X_AMZN_APIGATEWAY_API_ID": api_id,
        "HTTP_X_AMZN_TRACE_ID": "Root=1-test",
        "HTTP_X_FORWARDED_PORT": "443",
        "HTTP_X_REAL_IP": "127.0.0.1",
    }


def api_gateway_connect_headers(api_id="abc123", connection_id="connection-1"):
    headers = api_gateway_headers(api_id=api_id, connection_id=connection_id)
    headers.update(
        {
            "HTTP_COOKIE": "sessionid=test",
            "HTTP_ORIGIN": "https://testserver",
            "HTTP_SEC_WEBSOCKET_EXTENSIONS": "permessage-deflate",
            "HTTP_SEC_WEBSOCKET_KEY": "test-key",
            "HTTP_SEC_WEBSOCKET_VERSION": "13",
        }
    )
    return headers
