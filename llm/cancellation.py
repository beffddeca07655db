"""Stopping a reply while its worker is blocked reading the model provider.

A cancel request is stored on the reply (any worker, any instance may take it). The process
generating the reply learns of it from one watcher thread per process, which polls the
stored cancel requests of the replies this process is generating, every
LLM_REPLY_CANCEL_POLL_SECONDS, in one query whatever their number.

The watcher cannot interrupt a thread (or greenlet) blocked in `recv()`. It shuts down the
socket the provider call is reading instead: the blocked read returns at once, and the
model server sees its connection closed, so it stops generating (and billing). That works
before the first token (the provider still thinking), during a stall and mid-stream, for
streamed and non-streamed calls alike, because it happens below the SDK: the provider's
HTTP client is built on a network backend (`CancellableBackend`) whose connections know
which reply's call is using them.

Contracts:
- Inside `reply_cancel_scope(reply_id)`, a provider call on `cancellable_http_client()`
  raises ReplyCancelled once the reply is cancelled; so does `CancelScope.check()`.
- ReplyCancelled is a BaseException, like asyncio.CancelledError: the SDK retries on any
  Exception from the transport (and would sleep between attempts), so cancellation must not
  look like one. Only the reply service catches it.
"""

import contextlib
import contextvars
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpcore2
import httpx2
import openai
from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)


class ReplyCancelled(BaseException):
    """The user cancelled the reply being generated."""


class CancelScope:
    """One attempt at generating one reply, as seen by the watcher and the network backend."""

    def __init__(self, reply_id: uuid.UUID) -> None:
        self.reply_id = reply_id
        self.cancelled = False
        self._streams: set[CancellableStream] = set()
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """Mark the scope cancelled and cut the connections its provider call is reading."""
        with self._lock:
            self.cancelled = True
            streams = list(self._streams)
        for stream in streams:
            stream.shut_down()

    def check(self) -> None:
        if self.cancelled:
            raise ReplyCancelled

    def _enter(self, stream: "CancellableStream") -> None:
        with self._lock:
            self._streams.add(stream)
        # Checked after registering: a cancel between the two has shut the stream down already.
        self.check()

    def _leave(self, stream: "CancellableStream") -> None:
        with self._lock:
            self._streams.discard(stream)


_current_scope: contextvars.ContextVar[CancelScope | None] = contextvars.ContextVar("reply_cancel_scope", default=None)


class CancelWatcher:
    """Per process: the replies being generated here, and the thread looking for their cancels."""

    def __init__(self, find_cancelled: Callable[[list[uuid.UUID]], Iterable[uuid.UUID]]) -> None:
        self._find_cancelled = find_cancelled
        self._scopes: dict[uuid.UUID, CancelScope] = {}
        self._lock = threading.Lock()
        self._pid = 0

    def register(self, scope: CancelScope) -> None:
        with self._lock:
            if self._pid != os.getpid():
                # A fork (gunicorn worker) does not inherit the parent's thread.
                self._scopes = {}
                threading.Thread(target=self._run, name="reply-cancel-watcher", daemon=True).start()
                self._pid = os.getpid()
            self._scopes[scope.reply_id] = scope

    def unregister(self, scope: CancelScope) -> None:
        with self._lock:
            if self._scopes.get(scope.reply_id) is scope:
                del self._scopes[scope.reply_id]

    def poll(self) -> None:
        """Cancel the scopes whose replies have a stored cancel request (one query)."""
        with self._lock:
            scopes = dict(self._scopes)
        if not scopes:
            return
        for reply_id in self._find_cancelled(list(scopes)):
            scope = scopes.get(reply_id)
            if scope is not None and not scope.cancelled:
                logger.info("reply %s: cancel requested; stopping its provider call", reply_id)
                scope.cancel()

    def _run(self) -> None:
        while True:
            time.sleep(settings.LLM_REPLY_CANCEL_POLL_SECONDS)
            try:
                self.poll()
            except Exception:
                logger.exception("looking for cancelled replies failed")
                self._drop_broken_connection()

    @staticmethod
    def _drop_broken_connection() -> None:
        """Let the next poll open a new database connection. This thread must outlive any
        failure: without it no cancel reaches this process's replies until it restarts."""
        try:
            close_old_connections()
        except Exception:
            logger.exception("closing the cancel watcher's database connection failed")


def _cancelled_reply_ids(reply_ids: list[uuid.UUID]) -> Iterable[uuid.UUID]:
    from messages_app.selectors import message_cancel_requested_ids

    return message_cancel_requested_ids(message_ids=reply_ids)


watcher = CancelWatcher(_cancelled_reply_ids)


@contextlib.contextmanager
def reply_cancel_scope(reply_id: uuid.UUID) -> Iterator[CancelScope]:
    """Make the provider calls made inside cancellable by a stored cancel request for `reply_id`."""
    scope = CancelScope(reply_id)
    watcher.register(scope)
    token = _current_scope.set(scope)
    try:
        yield scope
    finally:
        _current_scope.reset(token)
        watcher.unregister(scope)


class CancellableStream(httpcore2.NetworkStream):
    """A provider connection that the watcher can cut while a call of a cancelled reply reads it."""

    def __init__(self, inner: httpcore2.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._io(lambda: self._inner.read(max_bytes, timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._io(lambda: self._inner.write(buffer, timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        return CancellableStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    def shut_down(self) -> None:
        """Wake a read blocked on this connection (from another thread) and tell the server."""
        sock = self._inner.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _io(self, call: Callable[[], Any]) -> Any:
        scope = _current_scope.get()
        if scope is None:
            return call()
        scope._enter(self)
        try:
            result = call()
        except Exception:
            scope.check()
            raise
        finally:
            scope._leave(self)
        # A read woken by the shutdown returns b"" (end of stream): it was the cancel.
        scope.check()
        return result


class CancellableBackend(httpcore2.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        scope = _current_scope.get()
        if scope is not None:
            scope.check()
        return CancellableStream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.NetworkStream:
        return CancellableStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def cancellable_http_client(*, max_connections: int) -> httpx2.Client:
    """The provider's HTTP client: the SDK's defaults but at most `max_connections`, on connections a cancel can cut."""
    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    transport = httpx2.HTTPTransport(limits=limits)
    # httpx2 does not take a network backend; the pool it built is replaced by one that has ours.
    transport._pool = httpcore2.ConnectionPool(
        ssl_context=httpx2.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=CancellableBackend(),
    )
    return openai.DefaultHttpxClient(transport=transport)
