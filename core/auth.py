from django.contrib.auth.models import User
from rest_framework.request import Request


def request_user(request: Request) -> User:
    """The authenticated user of an API request (every API view requires authentication)."""
    user = request.user
    if not isinstance(user, User):
        raise TypeError("request_user() needs an authenticated request")
    return user
