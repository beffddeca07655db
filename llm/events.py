"""Server-sent events framing for reply streams: event ids, heartbeats, the reconnection hint.

Every event carries an `id:` naming a position in the reply: which attempt at it, how many
characters of its text the client has once it got this event, and (with the Redis relay)
the relay entry it came from. Clients treat it as opaque and send it back as
`Last-Event-ID` (EventSource does so by itself when it reconnects) or as the `last_event_id`
query parameter; the server then sends exactly the text after that position.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from core.errors import ApplicationError

# An attempt, the characters received (at most 18 digits: a reply is far shorter), then
# "0" or a Redis stream entry id. Documented as the parameters' pattern in the schema.
EVENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}\.[0-9]{1,18}\.(0|[0-9]{1,20}-[0-9]{1,20})$"
_EVENT_ID = re.compile(EVENT_ID_PATTERN)
HEARTBEAT = b": keep-alive\n\n"


class InvalidLastEventId(ApplicationError):
    code = "invalid_last_event_id"
    default_message = "Last-Event-ID is not an event id of this reply's stream."


@dataclass(frozen=True)
class StreamPosition:
    """Where a client is in a reply's stream. `entry` is "" when no relay entry was read yet."""

    attempt: str
    offset: int
    entry: str = ""

    @property
    def event_id(self) -> str:
        return f"{self.attempt}.{self.offset}.{self.entry or '0'}"

    def advanced(self, *, chars: int, entry: str | None = None) -> "StreamPosition":
        return StreamPosition(self.attempt, self.offset + chars, self.entry if entry is None else entry)


def stream_position_parse(raw: str, *, param: str = "Last-Event-ID") -> StreamPosition:
    """The position an event id names; InvalidLastEventId (400) if it is not one of ours."""
    if not _EVENT_ID.match(raw.strip()):
        raise InvalidLastEventId(param=param)
    parts = raw.strip().split(".")
    entry = parts[2]
    return StreamPosition(parts[0], int(parts[1]), "" if entry == "0" else entry)


def sse_event(event: str, data: Any, *, position: StreamPosition) -> bytes:
    payload = json.dumps(data, separators=(",", ":"))
    return f"id: {position.event_id}\nevent: {event}\ndata: {payload}\n\n".encode()


def sse_retry(milliseconds: int) -> bytes:
    """Tells EventSource how long to wait before reconnecting after the connection drops."""
    return f"retry: {milliseconds}\n\n".encode()
