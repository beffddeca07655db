"""The benchmark (bench/run.py) runs end to end and reports every measurement.

Only that it runs and reports: its numbers are ratios for people to read, never thresholds.
"""

import pytest

from tests.bench_smoke import bench_run

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
    "interaction_delete_2000_vs_100_messages",
}


@pytest.mark.slow
def test_the_quick_benchmark_reports_every_measurement_as_positive_numbers_or_a_skip_reason(tmp_path):
    report, completed = bench_run("run.py", "--quick", output=tmp_path / "bench.json", timeout=150)

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
