"""Refuse to serve without a real secret key (the built-in one is for DEBUG only)."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

UNCONFIGURED_KEY_MESSAGE = (
    "DJANGO_SECRET_KEY is not set (or is the built-in development key) and DJANGO_DEBUG is off. "
    "Set DJANGO_SECRET_KEY to a long random string, for example the output of "
    "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`, in the environment or in .env "
    "(scripts/run writes one there on its first run); or set DJANGO_DEBUG=1 on a development machine."
)


def _has_secret_key() -> bool:
    try:
        return bool(settings.SECRET_KEY)
    except ImproperlyConfigured:  # Django's own refusal of an empty key.
        return False


def require_secret_key() -> None:
    """Raise ImproperlyConfigured, saying how to fix it, unless a secret key is configured."""
    if not _has_secret_key():
        raise ImproperlyConfigured(UNCONFIGURED_KEY_MESSAGE)


# A deploy check: tools that sign nothing (makemigrations, collectstatic) run without a key.
@register(Tags.security, deploy=True)
def secret_key_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    return [] if _has_secret_key() else [Error(UNCONFIGURED_KEY_MESSAGE, id="core.E001")]
