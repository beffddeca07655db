"""Runs tests.fake_openai.FakeOpenAIServer in a process of its own for the benchmark.

Usage: python bench/fake_openai_process.py WORDS
Prints the server's base URL on one line, then serves until its stdin is closed.

Differs from the test fixture in one way: TCP_NODELAY (see below).
A separate process keeps the fake's CPU time, GIL hold and allocations out of the process
being measured, as a real provider's would be.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fake_openai import Behaviour, FakeOpenAIServer


def reply_text(words: int) -> str:
    """A deterministic reply of `words` words (short words, like real tokens)."""
    vocabulary = ("the", "model", "answers", "with", "a", "fairly", "ordinary", "sentence", "about", "benchmarks.")
    return " ".join(vocabulary[index % len(vocabulary)] for index in range(words))


def main() -> None:
    words = int(sys.argv[1])
    server = FakeOpenAIServer()
    server.default = Behaviour(text=reply_text(words))
    # The fake writes a response's headers and body in two send() calls. With Nagle's
    # algorithm on, the body waits for the client's delayed ACK of the headers on a
    # kept-alive connection: about 40 ms per non-streamed request on Linux loopback, which
    # would swamp what is measured. Real servers (uvicorn, Go, nginx) set TCP_NODELAY.
    server._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
    server.start()
    print(server.base_url, flush=True)
    sys.stdin.read()  # Returns when the parent closes our stdin (or exits).
    server.stop()


if __name__ == "__main__":
    main()
