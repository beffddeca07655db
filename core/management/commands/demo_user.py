import secrets
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandParser
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create (or reuse) a local user and print its API token, for trying the service."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--staff", action="store_true", help="Also let the user into the admin.")
        parser.add_argument("--reset-password", action="store_true", help="Give an existing user a new password.")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Where the service listens.")

    def handle(self, *args: Any, username: str, staff: bool, reset_password: bool, url: str, **options: Any) -> None:
        user, created = User.objects.get_or_create(username=username)
        password = None
        if created or staff or reset_password:
            password = secrets.token_urlsafe(12)
            user.set_password(password)
            user.is_staff = user.is_superuser = staff or user.is_staff
            user.save()
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(f"user:     {username}")
        self.stdout.write(f"password: {password or '(unchanged; a new one with --reset-password)'}")
        self.stdout.write(f"token:    {token.key}")
        self.stdout.write(
            f'try:      curl -H "Authorization: Token {token.key}" {url.rstrip("/")}/api/v1/interactions/'
        )
