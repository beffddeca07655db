"""The admin benchmark (bench/admin.py) runs end to end and reports every page.

Only that it runs and reports: its numbers are ratios for people to read, never thresholds.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

EXPECTED_PAGES = {
    "interaction_change_page",
    "interaction_messages_changelist",
    "messages_changelist",
    "messages_changelist_failed",
    "interactions_changelist",
    "interactions_changelist_failed_replies",
    "usage_changelist",
}


@pytest.mark.slow
def test_the_quick_admin_benchmark_reports_time_and_size_of_every_page(tmp_path):
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENAI_", "LLM_", "DJANGO_", "MONGODB_", "REDIS_", "DATABASE_"))
    }
    output = tmp_path / "admin.json"

    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "admin.py"), "--quick", "--json", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["quick"] is True
    results = report["results"]
    assert set(results) == EXPECTED_PAGES | {"usage_record_vs_reply_final_write"}
    for name in EXPECTED_PAGES:
        row = results[name]
        assert row["small_ms"] > 0, name
        assert row["large_ms"] > 0, name
        assert row["small_bytes"] > 0, name
        assert row["time_ratio"] > 0, name
    assert results["usage_record_vs_reply_final_write"]["usage_write_ms"] > 0
    assert "interaction_change_page" in completed.stdout
