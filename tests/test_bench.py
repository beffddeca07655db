"""The benchmark (bench/run.py) runs end to end and reports every measurement.

Only that it runs and reports: its numbers are ratios for people to read, never thresholds.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_BENCHMARKS = {
    "api_post_reply_vs_get_detail",
    "openai_post_vs_raw_sdk",
    "openai_stream_post_vs_raw_sdk_stream",
    "openai_long_stream_post_vs_raw_sdk_stream",
    "messages_page_locmem_warm_vs_cold",
    "messages_page_redis_warm_vs_cold",
    "prompt_build_time_100_vs_10",
    "prompt_build_time_1000_vs_10",
    "prompt_build_time_10000_vs_10",
    "prompt_build_peak_memory_100_vs_10",
    "prompt_build_peak_memory_1000_vs_10",
    "prompt_build_peak_memory_10000_vs_10",
    "stream_reply_peak_memory_vs_non_streamed",
    "api_post_reply_long_history_vs_empty",
}


@pytest.mark.slow
def test_the_quick_benchmark_reports_every_measurement_as_positive_numbers_or_a_skip_reason(tmp_path):
    # The benchmark sets up its own throwaway database: it runs in a child process, away
    # from pytest-django's test database, with no provider, cache or database from the
    # developer's environment.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENAI_", "LLM_", "DJANGO_", "MONGODB_", "REDIS_", "DATABASE_"))
    }
    output = tmp_path / "bench.json"

    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--json", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["quick"] is True
    results = {result["name"]: result for result in report["benchmarks"]}
    assert set(results) == EXPECTED_BENCHMARKS
    for name, result in results.items():
        if result["skipped"]:
            assert isinstance(result["skipped"], str), name
            continue
        assert result["baseline"] > 0, name
        assert result["subject"] > 0, name
        assert result["ratio"] > 0, name
        assert result["unit"], name
    assert "api_post_reply_vs_get_detail" in completed.stdout
