"""Testing guide: rate limiting example, verbatim."""

import pytest

from django_aws_api_gateway_websockets.models import ConnectionRateLimit


@pytest.mark.django_db
def test_connection_rate_limit_blocks_excess_attempts():
    ip_address = "127.0.0.1"

    for _ in range(20):
        ConnectionRateLimit.record_attempt(
            ip_address=ip_address,
            successful=False,
        )

    allowed, attempt_count = ConnectionRateLimit.check_rate_limit(
        ip_address=ip_address,
        max_attempts=20,
        window_minutes=5,
    )

    assert allowed is False
    assert attempt_count == 20
