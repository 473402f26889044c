"""AWS Lambda entry point (``lambda_handler.handler`` in zappa_settings.json).

Module level runs once per container: Django is set up here, during Lambda's init phase.
The short names below are what zappa's ``events`` schedule (rule names are cut at 64 chars).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from django_aws_api_gateway_websockets.serverless import make_lambda_handler  # noqa: E402
from django_aws_api_gateway_websockets.serverless.scheduled import (  # noqa: E402,F401
    cleanup_tokens,
    clear_sessions,
)

handler = make_lambda_handler()
