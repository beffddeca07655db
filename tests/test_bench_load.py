"""The load script (bench/load.py) runs a small load against a real gunicorn and finds no
violation. Its timings are reported for people to read, never asserted."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# Minutes on a loaded machine: the subprocess timeout below, not the suite's 180 s, bounds it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(660)]


def test_a_small_concurrent_load_leaves_every_message_stored_once_with_one_terminal_reply(tmp_path):
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENAI_", "LLM_", "DJANGO_", "MONGODB_", "REDIS_", "DATABASE_", "API_"))
    }
    output = tmp_path / "load.json"

    completed = subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench" / "load.py"), "--clients", "10", "--messages", "10"),
            *("--shared-clients", "5", "--shared-messages", "3", "--json", str(output)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["violations"] == []
    assert not [status for status in report["statuses"] if int(status) >= 500]
    assert report["stored_messages"] == 2 * (10 * 10 + 5 * 3)
    assert report["requests_per_second"] > 0
    assert "req/s" in completed.stdout
