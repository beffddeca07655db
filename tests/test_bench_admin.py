"""The admin benchmark (bench/admin.py) runs end to end and reports every page.

Only that it runs and reports: its numbers are ratios for people to read, never thresholds.
"""

import pytest

from tests.bench_smoke import bench_run

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
    report, completed = bench_run("admin.py", "--quick", output=tmp_path / "admin.json", timeout=170)

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
