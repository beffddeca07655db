"""The HTTP benchmark (bench/http_bench.py) runs end to end against a real gunicorn and reports.

Only that it runs and reports: its numbers are ratios for people to read, never thresholds.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# Minutes on a loaded machine: the subprocess timeout below, not the suite's 180 s, bounds it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(660)]


def test_the_quick_http_benchmark_reports_every_row_it_ran_with_no_reply_left_in_progress(tmp_path):
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed: run scripts/install-system-deps (Debian package wrk)")
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENAI_", "LLM_", "DJANGO_", "MONGODB_", "REDIS_", "DATABASE_", "GUNICORN_"))
    }
    output = tmp_path / "http.json"

    completed = subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench" / "http_bench.py"), "--quick", "--json", str(output)),
            *("--only", "floors", "--only", "polling", "--only", "first_delta"),
            *("--only", "sweep", "--only", "blocking"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(output.read_text())
    rows = {row["name"]: row for row in report["benchmarks"]}
    assert {
        "floor_drf_get_vs_bare",
        "floor_bare_recycling_1000_vs_off",
        "after_poll_300_vs_100_messages",
        "first_streamed_delta_service_vs_model",
        "in_flight_non_streamed_4_clients",
        "in_flight_streamed_4_clients",
        "in_flight_non_streamed_4_clients_monitored",
    } <= set(rows)
    for name, row in rows.items():
        if row["skipped"]:
            continue
        assert row["baseline"] > 0, name
        assert row["subject"] > 0, name
    for name in ("in_flight_non_streamed_4_clients", "in_flight_streamed_4_clients"):
        assert rows[name]["notes"]["completed"] > 0, name
        assert rows[name]["notes"]["left_in_progress"] == 0, name
