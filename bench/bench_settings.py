"""Settings of the server the HTTP benchmark starts: the project's own, plus floor views.

The floors (bench/floor_views.py) are mounted beside the project's URLs, so that every
row is measured against the cheapest view of its kind served by the same processes with
the same middleware, database and cache. Nothing here is used outside bench/.

BENCH_CACHE=dummy serves every request cold (no response cache, no throttle history).
BENCH_BLOCKING_LOG=<path> records, in each worker, what blocked the gevent loop (with
GEVENT_MONITOR_THREAD_ENABLE=true): one JSON line per report, with the blocked stack.
"""

import os

from chatproject.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bench_urls"

if os.environ.get("BENCH_CACHE") == "dummy":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}

if os.environ.get("BENCH_BLOCKING_LOG"):
    from bench.blocking import record_blocking_reports

    record_blocking_reports(os.environ["BENCH_BLOCKING_LOG"])
