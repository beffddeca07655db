"""What a client sees on the wire at the edges, through a real gunicorn with gunicorn.conf.py.

Raw sockets, so that keep-alive, pipelining and gunicorn's own answers are what is tested, not
what an HTTP library makes of them.
"""

import json
import os
import socket
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT, gunicorn_serving

pytestmark = pytest.mark.slow

BODY_LIMIT = 32 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[int, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_", "DJANGO_", "MONGODB_"))}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('limits') / 'db.sqlite3'}",
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "chatproject.settings",
            "LLM_PROVIDER": "offline",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "REQUEST_BODY_MAX_BYTES": str(BODY_LIMIT),
            "REDIS_URL": "",
            "DJANGO_SECRET_KEY": os.environ["DJANGO_SECRET_KEY"],
        }
    )
    with gunicorn_serving(env, "--workers", "1", "--access-logfile", "/dev/null", timeout=30) as served:
        yield served.port, served.token


def raw_request(method: str, target: str, token: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Token {token}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self):  # type: ignore[no-untyped-def]
        return json.loads(self.body)


def read_answer(reader) -> Answer | None:  # type: ignore[no-untyped-def]
    """One HTTP/1.1 response, or None if the server closed the connection."""
    status_line = reader.readline()
    if not status_line:
        return None
    status = int(status_line.split()[1])
    headers = {}
    while (line := reader.readline().decode("latin-1").rstrip("\r\n")) != "":
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int(reader.readline().split(b";")[0], 16):
            body += reader.read(size)
            reader.readline()
        reader.readline()
    else:
        body = reader.read(int(headers.get("content-length", "0")))
    return Answer(status, headers, body)


def exchange(port: int, *requests: bytes) -> tuple[list[Answer], bool]:
    """Send `requests` pipelined on one connection; the answers read, and whether the server then closed it."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(b"".join(requests))
        reader = sock.makefile("rb")
        answers = []
        for _ in requests:
            answer = read_answer(reader)
            if answer is None:
                return answers, True
            answers.append(answer)
        sock.settimeout(0.5)
        try:
            closed = reader.read(1) == b""
        except TimeoutError:
            closed = False
        return answers, closed


def test_a_keep_alive_connection_serves_the_next_requests_after_a_413(server):
    port, token = server
    too_big = json.dumps({"title": "x" * (BODY_LIMIT * 2)}).encode()

    answers, _ = exchange(
        port,
        raw_request("POST", "/api/v1/interactions/", token, too_big),
        raw_request("GET", "/api/v1/interactions/", token),
        raw_request("GET", "/healthz", token),
    )

    assert [answer.status for answer in answers] == [413, 200, 200]
    assert answers[0].json()["error"]["code"] == "request_too_large"
    assert answers[1].json()["object"] == "list"


def test_a_body_too_big_to_drain_gets_its_413_and_then_a_closed_connection_never_a_lost_answer(server):
    port, token = server
    huge = b'{"title": "' + b"x" * (BODY_LIMIT * 8) + b'"}'  # Over REQUEST_BODY_DRAIN_MAX_BYTES.

    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(raw_request("POST", "/api/v1/interactions/", token, huge))
        answer = read_answer(sock.makefile("rb"))

    assert answer is not None
    assert answer.status == 413
    assert answer.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_api_routes_answer_without_the_trailing_slash_and_never_redirect(server, method):
    port, token = server
    body = json.dumps({"title": "no slash"}).encode() if method == "POST" else b""

    answers, _ = exchange(port, raw_request(method, "/api/v1/interactions", token, body))

    assert answers[0].status == {"GET": 200, "POST": 201}[method]
    assert answers[0].headers["content-type"] == "application/json"
    assert "location" not in answers[0].headers
    if method == "POST":
        created = answers[0].json()
        assert created["title"] == "no slash"
        detail, _ = exchange(port, raw_request("GET", f"/api/v1/interactions/{created['id']}", token))
        assert detail[0].status == 200
        assert detail[0].json()["id"] == created["id"]


def test_a_5kb_id_answers_400_in_the_envelope_from_the_app_not_a_gunicorn_page(server):
    port, token = server

    answers, _ = exchange(port, raw_request("GET", "/api/v1/interactions/" + "a" * 5000 + "/", token))

    assert answers[0].status == 400
    assert answers[0].headers["content-type"] == "application/json"
    assert answers[0].json()["error"]["param"] == "interaction_id"


def test_a_5kb_query_value_answers_400_in_the_envelope(server):
    port, token = server

    answers, _ = exchange(port, raw_request("GET", "/api/v1/interactions/?after=" + "a" * 5000, token))

    assert answers[0].status == 400
    assert answers[0].json()["error"] == {
        "message": "Query parameter after: at most 200 characters.",
        "type": "invalid_request_error",
        "param": "after",
        "code": "query_value_too_long",
    }


def test_only_a_request_line_over_gunicorns_8190_byte_limit_gets_gunicorns_414_in_the_envelope(server):
    port, token = server

    answers, closed = exchange(port, raw_request("GET", "/api/v1/interactions/" + "a" * 8200 + "/", token))

    assert answers[0].status == 414
    assert answers[0].headers["content-type"] == "application/json"
    assert answers[0].json()["error"]["code"] == "request_line_too_long"
    assert closed


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Accept": "application/json\x00"}, 400, "invalid_request"),
        ({"Idempotency-Key": "a\x00b"}, 400, "invalid_request"),
        ({f"X-Extra-{n}": "1" for n in range(101)}, 431, "request_headers_too_large"),
        ({"X-Big": "b" * 9000}, 431, "request_headers_too_large"),
    ],
    ids=["nul-in-accept", "nul-in-idempotency-key", "101-header-fields", "9000-byte-header"],
)
def test_headers_gunicorn_refuses_itself_are_answered_in_the_envelope(server, headers, status, code):
    port, token = server

    answers, closed = exchange(port, raw_request("GET", "/api/v1/interactions/", token, **headers))

    assert answers[0].status == status
    assert answers[0].headers["content-type"] == "application/json"
    error = answers[0].json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", code)
    assert closed


def chunked_request(method: str, target: str, token: str, body: bytes, chunk_size: int = 7) -> bytes:
    """A request whose body is sent with Transfer-Encoding: chunked (no Content-Length), in small chunks."""
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Token {token}",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
    ]
    chunks = b"".join(
        f"{len(body[i : i + chunk_size]):x}\r\n".encode() + body[i : i + chunk_size] + b"\r\n"
        for i in range(0, len(body), chunk_size)
    )
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + chunks + b"0\r\n\r\n"


def test_a_chunked_body_is_read_not_taken_for_an_empty_one(server):
    port, token = server
    body = json.dumps({"title": "sent in chunks", "temperature": 0.5}).encode()

    answers, _ = exchange(port, chunked_request("POST", "/api/v1/interactions/", token, body))
    created = answers[0].json()
    patched, _ = exchange(
        port, chunked_request("PATCH", f"/api/v1/interactions/{created['id']}/", token, b'{"title": "renamed"}')
    )

    assert answers[0].status == 201
    assert (created["title"], created["temperature"]) == ("sent in chunks", 0.5)
    assert patched[0].status == 200
    assert patched[0].json()["title"] == "renamed"


def test_a_chunked_body_over_the_limit_answers_413_and_stores_nothing(server):
    port, token = server
    body = json.dumps({"title": "x" * (BODY_LIMIT * 2)}).encode()

    answers, _ = exchange(port, chunked_request("POST", "/api/v1/interactions/", token, body, chunk_size=4096))
    listed, _ = exchange(port, raw_request("GET", "/api/v1/interactions/?limit=100", token))

    assert answers[0].status == 413
    assert answers[0].json()["error"]["code"] == "request_too_large"
    assert not [i for i in listed[0].json()["data"] if i["title"].startswith("xxx")]
