"""The demo_user command that scripts/run uses to leave a newcomer able to authenticate."""

import re
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db


def run_demo_user(*args: str) -> str:
    out = StringIO()
    call_command("demo_user", *args, stdout=out)
    return out.getvalue()


def test_demo_user_prints_a_password_and_token_that_work_and_a_curl_for_the_given_url(client):
    output = run_demo_user("--url", "http://127.0.0.1:8123")

    password = re.search(r"^password: (\S+)$", output, re.MULTILINE)[1]
    token = re.search(r"^token:    (\S+)$", output, re.MULTILINE)[1]
    assert User.objects.get(username="demo").check_password(password)
    assert Token.objects.get(key=token).user.username == "demo"
    assert f'curl -H "Authorization: Token {token}" http://127.0.0.1:8123/api/v1/interactions/' in output
    response = client.get("/api/v1/interactions/", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200


def test_running_it_again_keeps_the_password_and_the_token():
    first = run_demo_user()
    second = run_demo_user()

    assert "(unchanged" in second
    assert re.search(r"^token: .*$", first, re.MULTILINE)[0] == re.search(r"^token: .*$", second, re.MULTILINE)[0]


def test_staff_users_can_use_the_admin():
    run_demo_user("--username", "admin", "--staff")

    admin = User.objects.get(username="admin")
    assert admin.is_staff
    assert admin.is_superuser
