"""The reply-progress benchmark (bench/reply_progress.py) runs and reports; its numbers are for people to read."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_the_quick_reply_progress_benchmark_reports_writes_and_relay_timings(tmp_path):
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "OPENAI_", "LLM_", "MONGODB_", "REDIS_", "DATABASE_", "REPLY_"))
    }
    report_path = tmp_path / "progress.json"

    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "reply_progress.py"), "--quick", "--json", str(report_path)],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=600,
    )

    report = json.loads(report_path.read_text())
    for row in report["progress"]:
        assert row["reply_chars"] > 0
        assert row["naive"]["content_writes"] > 0
        assert row["project"]["content_writes"] > 0
    assert set(report["relay"]["median_ms"]) >= {"no relay", "black-holed relay"}
