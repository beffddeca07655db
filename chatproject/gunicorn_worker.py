"""Gunicorn's gevent worker, closing database connections when their client goes.

Under gevent each client connection is served in its own greenlet, and Django keeps
database connections per greenlet (its connection handler is thread-local, and gevent
makes thread-locals greenlet-local). With CONN_MAX_AGE a connection outlives the request
so that the next request on the same keep-alive client connection reuses it; when the
client goes, the greenlet ends and nothing would close the connection until the garbage
collector found it. This worker closes it then, so the process never holds more database
connections than open client connections (proved by tests/test_gevent_worker.py).
"""

from gunicorn.workers.ggevent import GeventWorker as _GunicornGeventWorker


class GeventWorker(_GunicornGeventWorker):
    def handle(self, listener, client, addr):  # type: ignore[no-untyped-def]
        try:
            super().handle(listener, client, addr)
        finally:
            from django.db import connections

            connections.close_all()
