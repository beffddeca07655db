"""Running a benchmark script end to end, as its smoke test (tests/test_bench*.py) does."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

# Settings a benchmark must not inherit from the developer's or pytest's environment: it
# sets up its own throwaway database, with no provider, cache or database of theirs.
INHERITED_NOT = ("OPENAI_", "LLM_", "DJANGO_", "MONGODB_", "REDIS_", "DATABASE_")


def bench_run(
    script: str, *args: str, output: Path, timeout: float, also_not_inherited: tuple[str, ...] = ()
) -> tuple[dict[str, Any], "subprocess.CompletedProcess[str]"]:
    """Run bench/`script` with `args` and `--json output` in a child Python; assert that it
    succeeded; return the report it wrote and the finished process (for its output)."""
    dropped = INHERITED_NOT + also_not_inherited
    env = {name: value for name, value in os.environ.items() if not name.startswith(dropped)}
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, "--json", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    return json.loads(output.read_text()), completed
