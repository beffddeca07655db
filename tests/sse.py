import json
from collections.abc import Iterable
from typing import Any


def parse_sse(chunks: Iterable[bytes]) -> list[tuple[str, Any]]:
    """Split a text/event-stream body into (event, data) pairs (the `retry:` hint and comments left out)."""
    text = b"".join(chunks).decode()
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" not in fields:
            continue
        events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


def read_streamed(response) -> bytes:  # type: ignore[no-untyped-def]
    """The whole body of a Django streaming response, which is then closed (as a server would)."""
    try:
        return b"".join(response.streaming_content)
    finally:
        response.close()
