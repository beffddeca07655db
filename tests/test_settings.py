import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks

from tests.conftest import ROOT


def settings_printed(expression: str, *, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A new Python process with `env` loads the settings and prints `expression` (of `settings`)."""
    code = f"import django; django.setup(); from django.conf import settings; print({expression})"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=cwd, check=False)


def test_every_environment_variable_is_documented_in_env_example():
    settings_source = (ROOT / "chatproject" / "settings.py").read_text()
    used = set(re.findall(r'env\.\w+\(\s*"([A-Z_]+)"', settings_source))
    documented = set(re.findall(r"^#? ?([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))

    assert used, "no variables found in settings"
    assert used <= documented, f"undocumented: {sorted(used - documented)}"


def test_env_example_used_as_is_gives_a_working_configuration(tmp_path: Path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "OPENAI_", "LLM_", "MONGODB_", "REDIS_URL", "DATABASE_URL"))
    }
    env.update({"PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "chatproject.settings"})
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    # The one variable .env.example cannot hold a value for (scripts/run writes one to .env).
    env["DJANGO_SECRET_KEY"] = "a-generated-secret-" + "k" * 40

    result = settings_printed(
        "settings.DATABASES['default']['ENGINE'], settings.CACHES['default']['BACKEND']", env=env, cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "django.core.cache.backends.locmem.LocMemCache"]


def test_deploy_checks_pass_with_production_settings(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OPENAI_", "LLM_", "MONGODB_"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "chatproject.settings",
            "DJANGO_SECRET_KEY": "a-production-secret-" + "x" * 50,
            "DJANGO_ALLOWED_HOSTS": "chat.example.com",
            "DJANGO_SECURE_SSL_REDIRECT": "true",
            "DJANGO_SECURE_COOKIES": "true",
            "DJANGO_SECURE_HSTS_SECONDS": "31536000",
        }
    )

    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("proxy_count", "header"), [("0", "None"), ("2", "('HTTP_X_FORWARDED_PROTO', 'https')")], ids=["none", "two"]
)
def test_x_forwarded_proto_is_believed_only_behind_trusted_proxies(tmp_path: Path, proxy_count: str, header: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "chatproject.settings",
            "DJANGO_SECRET_KEY": os.environ["DJANGO_SECRET_KEY"],
            "DJANGO_TRUSTED_PROXY_COUNT": proxy_count,
        }
    )

    result = settings_printed("settings.SECURE_PROXY_SSL_HEADER", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == header


def test_a_reply_lease_shorter_than_a_provider_call_is_warned_about(settings):
    settings.LLM_CONNECT_TIMEOUT_SECONDS = 5
    settings.LLM_TIMEOUT_SECONDS = 60
    settings.LLM_MAX_RETRIES = 1
    settings.LLM_REPLY_LEASE_SECONDS = 120

    warnings = [message for message in run_checks() if message.id == "llm.W001"]

    assert len(warnings) == 1
    assert "130" in warnings[0].msg
    settings.LLM_REPLY_LEASE_SECONDS = 300
    assert [message for message in run_checks() if message.id == "llm.W001"] == []
