"""The first admin of a deployed site, created without a terminal.

``zappa manage`` cannot answer prompts, logs the command line it runs and shows the operator
only the function's log, so neither a prompt, an argument nor the command's output may carry
the password: it is read from the function's environment (``DJANGO_SUPERUSER_PASSWORD``,
Django's own name for it) and never printed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

USERNAME_VARIABLE = "DJANGO_SUPERUSER_USERNAME"
EMAIL_VARIABLE = "DJANGO_SUPERUSER_EMAIL"
PASSWORD_VARIABLE = "DJANGO_SUPERUSER_PASSWORD"


class SuperuserError(Exception):
    """The admin cannot be created or updated; the message says what to set."""


@dataclass(frozen=True)
class SuperuserOutcome:
    user: Any
    created: bool
    password_set: bool

    def __str__(self) -> str:
        name = self.user.get_username()
        if self.created:
            return f"Created superuser {name!r} with the password from ${PASSWORD_VARIABLE}."
        password = (
            f"password reset from ${PASSWORD_VARIABLE}"
            if self.password_set
            else "password unchanged"
        )
        return f"Updated superuser {name!r} (staff, superuser, active; {password})."


def ensure_superuser(
    username: str = "",
    email: str = "",
    reset_password: bool = False,
    environ: dict[str, str] | None = None,
) -> SuperuserOutcome:
    """Create the superuser ``username``, or make an existing user one.

    Arguments win over the environment. A new user gets the password from
    ``DJANGO_SUPERUSER_PASSWORD`` (required, checked by ``AUTH_PASSWORD_VALIDATORS``); an
    existing user keeps theirs unless ``reset_password``, so running it again after the admin
    changed their password in the admin does not undo that.
    """
    environ = os.environ if environ is None else environ
    username = username or environ.get(USERNAME_VARIABLE, "").strip()
    email = email or environ.get(EMAIL_VARIABLE, "").strip()
    password = environ.get(PASSWORD_VARIABLE, "")
    if not username:
        raise SuperuserError(f"Give --username or set {USERNAME_VARIABLE}.")
    user_model = get_user_model()
    lookup = {user_model.USERNAME_FIELD: username}
    user = user_model._default_manager.filter(**lookup).first()
    created = user is None
    if created:
        user = user_model(**lookup)
    if email:
        setattr(user, user_model.get_email_field_name(), email)
    user.is_staff = user.is_superuser = user.is_active = True
    password_set = created or reset_password
    if password_set:
        if not password:
            raise SuperuserError(
                f"Set {PASSWORD_VARIABLE} in the function's environment "
                "(aws_environment_variables): the password is never taken from the command line."
            )
        try:
            validate_password(password, user)
        except ValidationError as error:
            # The validators' messages describe the password without repeating it.
            raise SuperuserError(
                f"{PASSWORD_VARIABLE} is refused: {' '.join(error.messages)}"
            ) from None
        user.set_password(password)
    user.save()
    return SuperuserOutcome(user=user, created=created, password_set=password_set)
