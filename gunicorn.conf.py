"""Gunicorn settings for the chat backend, read from the environment.

Loaded by gunicorn itself (not Django), so it reads os.environ directly.
"""

import os
import socket
import subprocess
import sys

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# gunicorn's control socket (for gunicornc) is not used: off. Its default path is one per user
# ($HOME/.gunicorn/gunicorn.ctl), so every server a user runs on a host would take it from the others.
control_socket_disable = True
# Whether a request came over HTTPS is Django's to decide (SECURE_PROXY_SSL_HEADER, set only
# with DJANGO_TRUSTED_PROXY_COUNT > 0). gunicorn would otherwise believe X-Forwarded-Proto from
# any client on loopback (forwarded_allow_ips), trusted proxies or not.
secure_scheme_headers: dict[str, str] = {}

# A request spends its life waiting on the model provider, so the worker is an event
# loop: gevent (the worker monkey-patches the standard library before Django is loaded)
# parks a waiting request in a greenlet that costs a few kilobytes, where a thread costs
# a thread. The code stays synchronous. chatproject.gunicorn_worker adds one thing to
# gunicorn's gevent worker: a client connection's database connection is closed when the
# client goes, so open database connections never outnumber open client connections.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "chatproject.gunicorn_worker.GeventWorker")
# Processes: one per core uses the CPU; more than one also isolates crashes.
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# In-flight capacity per instance is workers × worker_connections (each open client
# connection, idle keep-alive ones included, holds one slot). A reply in flight also holds
# a database connection and, when it reaches the provider, an upstream connection
# (LLM_MAX_CONCURRENT_CALLS per worker bounds those).
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "500"))
# Only for GUNICORN_WORKER_CLASS=gthread.
threads = int(os.environ.get("GUNICORN_THREADS", "8"))

# How long a worker *process* may go without heartbeating before it is killed, not a
# limit on one request: the process heartbeats while its requests wait on the model, so
# replies and streams may last longer than this.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
# Let in-flight replies finish on deploys instead of cutting streams short.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# Behind a load balancer, set this above the balancer's idle timeout so gunicorn never
# closes a connection the balancer is about to reuse (which shows up as 502s).
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))

# Worker recycling is off (0). A recycled worker stops accepting, drains for at most
# graceful_timeout and abandons the replies still running after that, and its
# replacement starts with an empty local-memory cache: at 1000 requests that happened
# every second under load and made the cheapest view 3× slower. The benchmark's long
# run shows no memory or file-descriptor growth to bound. Set it (with jitter) only to
# contain a leak you have measured.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "0"))

# Containers log to stdout/stderr. The application writes one structured access line per
# request (core.middleware.AccessLogMiddleware: request id, route, user, duration, streams
# timed to their end), so gunicorn's own is off unless GUNICORN_ACCESS_LOG names a file ("-").
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Worker heartbeats touch a file every few seconds; on Docker's overlay /tmp that can
# stall a worker into a timeout, /dev/shm is memory. Gunicorn makes the file with mkstemp
# and unlinks it at once, so a fixed directory is safe.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108


# Several worker processes each count their own metrics; prometheus_client's multiprocess
# mode (django-prometheus honours PROMETHEUS_MULTIPROC_DIR) sums them at scrape time.
def on_starting(server):  # type: ignore[no-untyped-def]
    _raise_open_files_limit()
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
    # A worker that died mid-reply (kill -9, OOM, timeout) left its replies in_progress:
    # finalise them at once rather than after the lease.
    finalise_abandoned_replies("--dead-holder", f"{socket.gethostname()[:255]}:{worker.pid}")


def when_ready(server):  # type: ignore[no-untyped-def]
    # The workers of a previous server on this host (crashed, or killed with it) are gone.
    finalise_abandoned_replies("--dead-local")


# How long the stopping master waits for the finaliser (a Django start and a few queries):
# the platform's stop grace period must cover graceful_timeout plus this (compose: 45 s).
FINALISE_AT_EXIT_SECONDS = int(os.environ.get("GUNICORN_FINALISE_AT_EXIT_SECONDS", "10"))


def on_exit(server):  # type: ignore[no-untyped-def]
    """The server stops: finalise the replies its workers leave behind, before it exits.

    Workers still running after graceful_timeout are SIGKILLed and not reaped, so child_exit
    does not run for them; and the finalisers child_exit started may die with the container.
    The replacement may run on another host (a new container), where `--dead-local` at start
    never sees this host's claims: without this, their conversations would answer 409 until
    the lease lapsed. So the killed workers are reaped, and the finaliser runs to its end.
    """
    _reap(list(server.WORKERS), seconds=5)
    finalise_abandoned_replies("--dead-local", wait_seconds=FINALISE_AT_EXIT_SECONDS)


def _reap(pids: list[int], *, seconds: float) -> None:
    import time

    deadline = time.monotonic() + seconds
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    break
            except ChildProcessError:
                break
            time.sleep(0.05)


def finalise_abandoned_replies(*arguments: str, wait_seconds: float | None = None) -> None:
    """Run `manage.py finalise_abandoned_replies` in a child process; wait for it only if told to.

    A child, not Django inside the master: the master stays free of Django, its database
    connections and its threads (workers are forked from it), and is never blocked by a
    slow database. The master reaps the child as an unknown process.
    """
    manage = os.path.join(os.path.dirname(os.path.abspath(__file__)), "manage.py")
    env = {"DJANGO_SETTINGS_MODULE": "chatproject.settings", **os.environ}
    child = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [sys.executable, manage, "finalise_abandoned_replies", *arguments], env=env, stdin=subprocess.DEVNULL
    )
    if wait_seconds is not None:
        try:
            child.wait(timeout=wait_seconds)
        except subprocess.TimeoutExpired:
            child.kill()


# Request limits, set on purpose (gunicorn answers these itself, in its own HTML, before
# Django sees the request). The request line may be as long as gunicorn allows (8190 bytes,
# its maximum), so that an over-long id or query value reaches the app and is answered 400
# in the API's JSON envelope; only a request line over 8190 bytes gets gunicorn's
# "414 URI Too Long". More than 100 header fields, or one over 8190 bytes, get its 431/400.
limit_request_line = int(os.environ.get("GUNICORN_LIMIT_REQUEST_LINE", "8190"))
limit_request_fields = int(os.environ.get("GUNICORN_LIMIT_REQUEST_FIELDS", "100"))
limit_request_field_size = int(os.environ.get("GUNICORN_LIMIT_REQUEST_FIELD_SIZE", "8190"))


def _raise_open_files_limit() -> None:
    """Let the workers (they inherit it) open as many files as the hard limit allows.

    A reply in flight holds its client socket, a database connection (a SQLite connection
    is three files: the database, its WAL and its shared-memory index) and an upstream
    socket: 500 connections per worker need more than the usual soft limit of 1024.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard != resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
