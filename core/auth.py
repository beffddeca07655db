from typing import Any

from axes.backends import AxesStandaloneBackend
from django.contrib.auth.models import User
from django.http import HttpRequest
from rest_framework.request import Request


def request_user(request: Request) -> User:
    """The authenticated user of an API request (every API view requires authentication)."""
    user = request.user
    if not isinstance(user, User):
        raise TypeError("request_user() needs an authenticated request")
    return user


class LoginLockoutBackend(AxesStandaloneBackend):
    """django-axes' lockout check, for logins that come with a request: the admin's form and the
    token exchange. A call without one (a script, the test client's login()) has no client
    address to count against; it goes on to the password check without axes, instead of
    failing with AxesBackendRequestParameterRequired."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
