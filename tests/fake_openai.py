"""A real HTTP server on loopback that speaks the OpenAI chat-completions protocol.

The service under test talks to it through the real `openai` SDK. Tests script what it
does next (answer, stream, be slow, fail with a status, answer garbage) and read back
every request it received.
"""

import json
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Behaviour:
    text: str = "Hello from the fake model."
    finish_reason: str = "stop"
    status: int = 200
    delay_seconds: float = 0.0
    chunk_delay_seconds: float = 0.0
    garbage: bool = False
    # Non-streamed: answer exactly this JSON document instead of a completion.
    raw_json: Any = None
    empty: bool = False
    # Streaming: stop sending (and close the connection) after this many content chunks.
    break_after_chunks: int | None = None
    # Streaming: send the headers at once, then nothing for this long before the first token.
    stall_before_first_token_seconds: float = 0.0
    # Streaming: one good content chunk, then these JSON documents as the stream's events, then [DONE].
    stream_events_after_first: list[Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    usage: dict[str, int] | None = field(
        default_factory=lambda: {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    )


class FakeOpenAIServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.default = Behaviour()
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        # time.monotonic() of each client hang-up noticed while a reply was being sent or awaited.
        self.hangups: list[float] = []
        # While set and not yet opened, requests wait here (at most 30 s) before answering:
        # a test can see how many were in flight at once, without timing anything.
        self.gate: threading.Event | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._queue.clear()
            self.default = Behaviour()
            self.in_flight = 0
            self.max_in_flight = 0
            self.hangups.clear()
            self.gate = None

    def then(self, **behaviour: Any) -> "FakeOpenAIServer":
        """Queue the behaviour of the next request; unqueued requests use `default`."""
        self._queue.append(Behaviour(**behaviour))
        return self

    def wait_for_in_flight(self, count: int, timeout: float = 30.0) -> int:
        """How many requests are in flight once `count` are, or when `timeout` has passed."""
        deadline = time.monotonic() + timeout
        while self.in_flight < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.in_flight

    def wait_for_hangup(self, timeout: float = 10.0) -> float | None:
        """When the first client hang-up was noticed, waiting up to `timeout` for one (None if none came)."""
        deadline = time.monotonic() + timeout
        while not self.hangups and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.hangups[0] if self.hangups else None

    @property
    def last_request(self) -> dict[str, Any]:
        return self.requests[-1]

    def _next(self) -> Behaviour:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    fake.requests.append({"path": self.path, "headers": headers, "body": body})
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if fake.gate is not None:
                        fake.gate.wait(timeout=30)
                    behaviour = fake._next()
                    if behaviour.delay_seconds and not self._wait(behaviour.delay_seconds):
                        return
                    if self.path != "/v1/chat/completions":
                        self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                    elif behaviour.status != 200:
                        self._json(
                            behaviour.status,
                            {"error": {"message": f"fake failure {behaviour.status}", "type": "server_error"}},
                            behaviour.headers,
                        )
                    elif behaviour.raw_json is not None:
                        self._json(200, behaviour.raw_json)
                    elif behaviour.garbage:
                        self._raw(200, b"<html>this is not JSON</html>", "application/json")
                    elif body.get("stream"):
                        self._stream(body, behaviour)
                    else:
                        self._complete(body, behaviour)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _wait(self, seconds: float) -> bool:
                """Sleep, watching the connection: False (and the hang-up recorded) if the client closed it."""
                deadline = time.monotonic() + seconds
                while (left := deadline - time.monotonic()) > 0:
                    readable, _, _ = select.select([self.connection], [], [], left)
                    if not readable:
                        continue
                    try:
                        peeked = self.connection.recv(1, socket.MSG_PEEK)
                    except OSError:
                        peeked = b""
                    if not peeked:
                        with fake._lock:
                            fake.hangups.append(time.monotonic())
                        self.close_connection = True
                        return False
                    time.sleep(left)  # The client sent more; it is alive.
                return True

            def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                self._raw(status, json.dumps(payload).encode(), "application/json", headers)

            def _raw(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _complete(self, body: dict[str, Any], behaviour: Behaviour) -> None:
                content = None if behaviour.empty else behaviour.text
                self._json(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": f"{body.get('model')}-served",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": behaviour.finish_reason,
                            }
                        ],
                        "usage": behaviour.usage,
                    },
                )

            def _stream(self, body: dict[str, Any], behaviour: Behaviour) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                model = f"{body.get('model')}-served"
                words = [] if behaviour.empty else [w + " " for w in behaviour.text.split(" ")]
                if words:
                    words[-1] = words[-1].rstrip(" ")

                def send(payload: dict[str, Any]) -> None:
                    try:
                        self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
                        self.wfile.flush()
                    except OSError:
                        with fake._lock:
                            fake.hangups.append(time.monotonic())
                        raise

                def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
                    return {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "created": int(time.time()),
                        "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                    }

                send(chunk({"role": "assistant", "content": ""}))
                if behaviour.stall_before_first_token_seconds and not self._wait(
                    behaviour.stall_before_first_token_seconds
                ):
                    return
                if behaviour.stream_events_after_first is not None:
                    send(chunk({"content": words[0]}))
                    for event in behaviour.stream_events_after_first:
                        send(event)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.close_connection = True
                    return
                for index, word in enumerate(words):
                    if behaviour.break_after_chunks is not None and index >= behaviour.break_after_chunks:
                        self.close_connection = True
                        return
                    if behaviour.chunk_delay_seconds and not self._wait(behaviour.chunk_delay_seconds):
                        return
                    send(chunk({"content": word}))
                send(chunk({}, behaviour.finish_reason))
                if body.get("stream_options", {}).get("include_usage") and behaviour.usage:
                    send(
                        {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion.chunk",
                            "created": int(time.time()),
                            "model": model,
                            "choices": [],
                            "usage": behaviour.usage,
                        }
                    )
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        return Handler
