"""Records what blocks a gevent worker's event loop (the benchmark only).

gevent's monitor thread (GEVENT_MONITOR_THREAD_ENABLE=true) notices when the loop has not
switched greenlets for GEVENT_MAX_BLOCKING_TIME seconds and sends an EventLoopBlocked event
from its own OS thread, while the loop is still blocked. The stack of the loop's thread at
that moment is what blocks it; each report is appended as a JSON line.
"""

import json
import os
import sys
import time
import traceback
from typing import Any


def record_blocking_reports(path: str) -> None:
    from gevent import events

    def on_event(event: Any) -> None:
        if not isinstance(event, events.EventLoopBlocked):
            return
        # The loop's OS thread (threading's idents are greenlets' once gevent has patched it).
        frame = sys._current_frames().get(event.hub.thread_ident)
        stack = [f"{os.path.relpath(f.filename)}:{f.lineno} {f.name}" for f in traceback.extract_stack(frame)][-25:]
        if not stack:
            return
        line = {"pid": os.getpid(), "at": time.time(), "threshold": event.blocking_time, "stack": stack}
        with open(path, "a") as log:
            log.write(json.dumps(line) + "\n")

    events.subscribers.append(on_event)
