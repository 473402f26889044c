"""Test settings: the example project's, made fast and isolated from any real AWS account."""

import os
import tempfile

# Never reach a real AWS account from the tests, whatever the developer's environment holds.
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_name, None)
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"

from project.settings import *  # noqa: E402,F403
from project.settings import DATABASES  # noqa: E402

# SQLite: a file, not shared-cache memory, whose table locks fail at once instead of waiting,
# so tests with real concurrent threads behave as they do in production.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"websockets-test-{os.getpid()}.sqlite3")
    }

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
AWS_GATEWAY_REGION_NAME = "us-east-1"
AWS_IAM_PROFILE = ""
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
WEBSOCKETS = {}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "root": {"handlers": ["null"], "level": "WARNING"},
}
