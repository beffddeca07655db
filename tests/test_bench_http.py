"""The HTTP benchmark (bench/http_bench.py) runs end to end against a real gunicorn and reports.

Only that it runs and reports: its numbers are ratios for people to read, never thresholds.
"""

import shutil

import pytest

from tests.bench_smoke import bench_run

# Minutes on a loaded machine: the subprocess timeout below, not the suite's 180 s, bounds it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(660)]


def test_the_quick_http_benchmark_reports_every_row_it_ran_with_no_reply_left_in_progress(tmp_path):
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed: run scripts/install-system-deps (Debian package wrk)")
    report, _ = bench_run(
        "http_bench.py",
        *("--quick", "--only", "floors", "--only", "polling", "--only", "first_delta"),
        *("--only", "sweep", "--only", "blocking"),
        output=tmp_path / "http.json",
        timeout=600,
        also_not_inherited=("GUNICORN_",),
    )
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
