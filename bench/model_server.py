"""An OpenAI-compatible model server for load tests: asyncio, TCP_NODELAY, keep-alive.

Usage: python bench/model_server.py [--port N]
Prints its base URL on one line, then serves until its stdin is closed.

The test fixture (tests/fake_openai.py) is a thread per connection, fine for tests but a
CPU cost of its own at hundreds of connections; this one serves them all on one event loop,
so that the load test measures the service, not the model. What a request gets is set by
the model name it asks for, so that one server serves every scenario of a run:

    bench-<seconds>s-<words>w    e.g. bench-2s-40w: 40 words, spread over 2 s when streamed
                                 (a delta every 50 ms, the first after 50 ms), all at once
                                 after 2 s when not; bench-0s-5w answers at once.

Chunks are sent as their own TCP segments (TCP_NODELAY), streamed responses use chunked
transfer encoding, and connections are kept alive, as a real provider's would be.
"""

import argparse
import asyncio
import json
import re
import socket
import sys
import time

MODEL = re.compile(r"bench-(?P<seconds>[0-9.]+)s-(?P<words>[0-9]+)w")
VOCABULARY = ("the", "model", "answers", "with", "a", "fairly", "ordinary", "sentence", "about", "benchmarks.")


def words_of(count: int) -> list[str]:
    words = [VOCABULARY[index % len(VOCABULARY)] + " " for index in range(count)]
    if words:
        words[-1] = words[-1].rstrip()
    return words


def chunk(model: str, delta: dict, finish_reason: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return f"data: {json.dumps(payload)}\n\n".encode()


def http_chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            body = json.loads(await reader.readexactly(length) or b"{}")
            await respond(body, writer)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def respond(body: dict, writer: asyncio.StreamWriter) -> None:
    model = str(body.get("model", ""))
    found = MODEL.fullmatch(model)
    seconds = float(found["seconds"]) if found else 0.0
    words = words_of(int(found["words"]) if found else 5)
    usage = {"prompt_tokens": 11, "completion_tokens": len(words), "total_tokens": 11 + len(words)}
    if not body.get("stream"):
        if seconds:
            await asyncio.sleep(seconds)
        payload = json.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "".join(words)}, "finish_reason": "stop"}
                ],
                "usage": usage,
            }
        ).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        return
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    writer.write(http_chunk(chunk(model, {"role": "assistant", "content": ""})))
    await writer.drain()
    interval = seconds / len(words) if words else 0.0
    for word in words:
        if interval:
            await asyncio.sleep(interval)
        writer.write(http_chunk(chunk(model, {"content": word})))
        await writer.drain()
    tail = chunk(model, {}, "stop")
    if body.get("stream_options", {}).get("include_usage"):
        tail += f"data: {json.dumps({'id': 'chatcmpl-bench', 'object': 'chat.completion.chunk', 'created': int(time.time()), 'model': model, 'choices': [], 'usage': usage})}\n\n".encode()  # noqa: E501
    tail += b"data: [DONE]\n\n"
    writer.write(http_chunk(tail) + b"0\r\n\r\n")
    await writer.drain()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = await asyncio.start_server(handle, "127.0.0.1", args.port, backlog=2048)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}/v1", flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    async with server:
        await stdin_closed


if __name__ == "__main__":
    asyncio.run(main())
