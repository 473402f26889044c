"""AWS Lambda entry point (``lambda_handler.handler`` in zappa_settings.json).

Module level runs once per container: Django is set up here, during Lambda's init phase.
The short names below are what zappa's ``events`` schedule (rule names are cut at 64 chars).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from django_aws_api_gateway_websockets.serverless import make_lambda_handler  # noqa: E402

handler = make_lambda_handler()


def clear_sessions(event=None, context=None):
    """Scheduled (zappa ``events``): delete disconnected sessions."""
    from django_aws_api_gateway_websockets.serverless import scheduled

    return scheduled.clear_sessions(event, context)


def cleanup_tokens(event=None, context=None):
    """Scheduled (zappa ``events``): delete used and expired tokens, old rate-limit rows."""
    from django_aws_api_gateway_websockets.serverless import scheduled

    return scheduled.cleanup_tokens(event, context)
