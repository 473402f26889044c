"""The example project as a new project has it: no WhiteNoise, no static files middleware."""

from project.settings import *  # noqa: F403
from project.settings import MIDDLEWARE

MIDDLEWARE = [name for name in MIDDLEWARE if "WhiteNoise" not in name]
