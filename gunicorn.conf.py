"""Gunicorn settings for the chat backend, read from the environment.

Loaded by gunicorn itself (not Django), so it reads os.environ directly.
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"

# Requests spend most of their time waiting on the model provider, so threads (cheap to
# park on I/O) carry the concurrency and a few processes give crash isolation.
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))

# With gthread workers this is how long a worker *process* may go without heartbeating
# before it is killed, not a limit on one request: the process heartbeats while its
# threads wait on the model, so replies and streams may last longer than this.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
# Let in-flight replies finish on deploys instead of cutting streams short.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# Behind a load balancer, set this above the balancer's idle timeout so gunicorn never
# closes a connection the balancer is about to reuse (which shows up as 502s).
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))

# Recycle workers now and then to bound slow memory growth; jitter keeps them from all
# restarting at once.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "1000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "100"))

# Containers log to stdout/stderr.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Worker heartbeats touch a file every few seconds; on Docker's overlay /tmp that can
# stall a worker into a timeout, /dev/shm is memory. Gunicorn makes the file with mkstemp
# and unlinks it at once, so a fixed directory is safe.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108


# Several worker processes each count their own metrics; prometheus_client's multiprocess
# mode (django-prometheus honours PROMETHEUS_MULTIPROC_DIR) sums them at scrape time.
def on_starting(server):  # type: ignore[no-untyped-def]
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


# Request limits, set on purpose (gunicorn answers these itself, in its own HTML, before
# Django sees the request). The request line may be as long as gunicorn allows (8190 bytes,
# its maximum), so that an over-long id or query value reaches the app and is answered 400
# in the API's JSON envelope; only a request line over 8190 bytes gets gunicorn's
# "414 URI Too Long". More than 100 header fields, or one over 8190 bytes, get its 431/400.
limit_request_line = int(os.environ.get("GUNICORN_LIMIT_REQUEST_LINE", "8190"))
limit_request_fields = int(os.environ.get("GUNICORN_LIMIT_REQUEST_FIELDS", "100"))
limit_request_field_size = int(os.environ.get("GUNICORN_LIMIT_REQUEST_FIELD_SIZE", "8190"))
