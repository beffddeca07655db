"""The load script (bench/load.py) runs a small load against a real gunicorn and finds no
violation. Its timings are reported for people to read, never asserted."""

import pytest

from tests.bench_smoke import bench_run

# Minutes on a loaded machine: the subprocess timeout below, not the suite's 180 s, bounds it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(660)]


def test_a_small_concurrent_load_leaves_every_message_stored_once_with_one_terminal_reply(tmp_path):
    report, completed = bench_run(
        "load.py",
        *("--clients", "10", "--messages", "10", "--shared-clients", "5", "--shared-messages", "3"),
        output=tmp_path / "load.json",
        timeout=600,
        also_not_inherited=("API_",),
    )
    assert report["violations"] == []
    assert not [status for status in report["statuses"] if int(status) >= 500]
    assert report["stored_messages"] == 2 * (10 * 10 + 5 * 3)
    assert report["requests_per_second"] > 0
    assert "req/s" in completed.stdout
