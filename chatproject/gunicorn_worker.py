"""Gunicorn's gevent worker, with two additions.

- Database connections are closed when their client goes. Under gevent each client
  connection is served in its own greenlet, and Django keeps database connections per
  greenlet (its connection handler is thread-local, and gevent makes thread-locals
  greenlet-local). With CONN_MAX_AGE a connection outlives the request so that the next
  request on the same keep-alive client connection reuses it; when the client goes, the
  greenlet ends and nothing would close the connection until the garbage collector found
  it. This worker closes it then, so the process never holds more database connections than
  open client connections (proved by tests/test_gevent_worker.py).
- The requests gunicorn refuses itself, before Django sees them (a request line over 8190
  bytes, too many or too large header fields, a NUL or a bad character in a header, a bad
  chunk), are answered in the API's JSON error envelope, not gunicorn's HTML page.
"""

import json

from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker as _GunicornGeventWorker

ERROR_CODES = {
    400: "invalid_request",
    403: "forbidden",
    414: "request_line_too_long",
    417: "expectation_failed",
    431: "request_headers_too_large",
    500: "internal_error",
    501: "unsupported_transfer_coding",
}


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:  # type: ignore[no-untyped-def]
    """gunicorn's util.write_error, in the API's error envelope (core.exceptions.error_body)."""
    from core.exceptions import error_body  # Django is loaded by the time a request is refused.

    body = json.dumps(
        error_body(
            message=f"{reason}: {mesg}" if mesg else reason,
            status_code=status_int,
            code=ERROR_CODES.get(status_int, "invalid_request"),
        )
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


class GeventWorker(_GunicornGeventWorker):
    def init_process(self) -> None:
        # Worker.handle_error looks util.write_error up on each error: this process's answers.
        util.write_error = write_json_error
        super().init_process()

    def handle(self, listener, client, addr):  # type: ignore[no-untyped-def]
        try:
            super().handle(listener, client, addr)
        finally:
            from django.db import connections

            connections.close_all()
