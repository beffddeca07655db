"""Speed and memory benchmark of the chat backend, as ratios against baselines from the same run.

Run: .venv/bin/python bench/run.py [--quick] [--json PATH]

Every number is a ratio (subject / baseline) whose two sides are measured in the same process,
round by round in alternating order (AB BA AB ...), and summarised by medians, so that
machine noise and a slow machine cancel out. See bench/README.md.
"""

import argparse
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fake_openai_process import reply_text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import LineServer, Row, django_setup_in_process, fmt, machine  # noqa: E402

DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"
PROMPT = "You are a helpful assistant. Answer briefly."
USER_TEXT = "How do I measure the overhead of a web API without fooling myself? " * 2
PROMPT_SIZES = (10, 100, 1000, 10000)
LONG_REPLY_WORDS = 2000


@dataclass(frozen=True)
class Profile:
    rounds: int  # interleaved rounds per timed comparison (median over them)
    reps: int  # requests per side per round
    prompt_calls: int  # conversation_build calls per round on 10 messages; fewer in proportion on longer ones
    memory_rounds: int  # tracemalloc rounds (each one request or call per side)
    page_messages: int
    long_history: int
    delete_messages: int  # the long conversation deleted against one of 100 messages
    delete_rounds: int


DEFAULT = Profile(
    rounds=9,
    reps=12,
    prompt_calls=2000,
    memory_rounds=5,
    page_messages=500,
    long_history=2000,
    delete_messages=100_000,
    delete_rounds=3,
)
QUICK = Profile(
    rounds=2,
    reps=2,
    prompt_calls=200,
    memory_rounds=1,
    page_messages=500,
    long_history=2000,
    delete_messages=2000,
    delete_rounds=2,
)


# --- Measuring ---------------------------------------------------------------------------


def time_calls(call: Callable[[Any], object], reps: int, prepare: Callable[[], Any] | None = None) -> float:
    """Mean seconds per call. `prepare` runs before each call, outside the clock."""
    total = 0
    for _ in range(reps):
        argument = prepare() if prepare is not None else None
        started = time.perf_counter_ns()
        call(argument)
        total += time.perf_counter_ns() - started
    return total / reps / 1e9


def interleaved(baseline: Callable[[], float], subject: Callable[[], float], rounds: int) -> tuple[float, float, float]:
    """Run baseline and subject rounds alternately (AB BA AB ...).

    Each callable measures one round and returns a value. Returns the medians of the
    baseline values, of the subject values and of the per-round ratios subject / baseline.
    """
    baselines: list[float] = []
    subjects: list[float] = []
    ratios: list[float] = []
    for index in range(rounds):
        gc.collect()
        if index % 2 == 0:
            base, subj = baseline(), subject()
        else:
            subj, base = subject(), baseline()
        baselines.append(base)
        subjects.append(subj)
        ratios.append(subj / base)
    return statistics.median(baselines), statistics.median(subjects), statistics.median(ratios)


def peak_bytes(call: Callable[[], object]) -> int:
    """Peak traced memory above the level at the start of `call` (tracemalloc must be on)."""
    gc.collect()
    tracemalloc.reset_peak()
    start, _ = tracemalloc.get_traced_memory()
    call()
    _, peak = tracemalloc.get_traced_memory()
    return peak - start


@contextmanager
def tracing() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


# --- Environment -------------------------------------------------------------------------


def django_setup(workdir: Path) -> None:
    """Configure and migrate a throwaway SQLite file database; ignore the developer's .env."""
    # The benchmark posts messages far faster than any client may.
    django_setup_in_process(workdir / "bench.sqlite3", API_MESSAGE_POST_THROTTLE_RATE="1000000/second")
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


class FakeOpenAIProcess(LineServer):
    """tests.fake_openai.FakeOpenAIServer in a child process, answering `words` words."""

    def __init__(self, words: int) -> None:
        super().__init__(ROOT / "bench" / "fake_openai_process.py", str(words))


class Context:
    """A user with a token, an API client and helpers shared by the benchmarks."""

    def __init__(self) -> None:
        from django.contrib.auth.models import User
        from rest_framework.authtoken.models import Token
        from rest_framework.test import APIClient

        self.user = User.objects.create_user(username="bench", password=None)
        token = Token.objects.create(user=self.user)
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    def new_interaction(self) -> Any:
        from interactions.services import interaction_create

        return interaction_create(owner=self.user, title="bench", model_name="bench-model", prompt=PROMPT)

    @staticmethod
    def messages_url(interaction: Any) -> str:
        from django.urls import reverse

        return reverse("message-list", kwargs={"interaction_id": str(interaction.pk)})

    def reset_throttle(self) -> None:
        """Forget the user's request history so the 600/minute API throttle never answers 429.

        Called between rounds, outside the clock: within a round the throttle does its
        normal per-request work.
        """
        from django.core.cache import cache

        cache.delete(f"throttle_user_{self.user.pk}")

    @staticmethod
    def expect(response: Any, status: int) -> Any:
        if response.status_code != status:
            body = b"".join(response.streaming_content) if response.streaming else response.content
            raise RuntimeError(f"expected HTTP {status}, got {response.status_code}: {body[:500]!r}")
        return response

    def post_message(self, url: str) -> Any:
        return self.expect(self.client.post(url, {"content": USER_TEXT}, format="json"), 201)

    def post_message_streamed(self, url: str) -> bytes:
        """POST with ?stream=true and read the whole event stream; returns the last event."""
        response = self.expect(self.client.post(f"{url}?stream=true", {"content": USER_TEXT}, format="json"), 200)
        last = b""
        try:
            for chunk in response.streaming_content:
                last = chunk
        finally:
            response.close()
        if b"\nevent: reply.completed\n" not in b"\n" + last:
            raise RuntimeError(f"the stream did not end with reply.completed: {last[:300]!r}")
        return last

    def count_queries(self, call: Callable[[], object]) -> int:
        return self.database_work(call)["queries"]

    @staticmethod
    def database_work(call: Callable[[], object]) -> dict[str, Any]:
        """How many statements `call` runs, how many write, and the time spent in them."""
        from django.db import connection

        statements: list[tuple[str, int]] = []

        def timed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            started = time.perf_counter_ns()
            try:
                return execute(sql, params, many, context)
            finally:
                statements.append((sql, time.perf_counter_ns() - started))

        with connection.execute_wrapper(timed):
            call()
        writes = [ns for sql, ns in statements if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
        return {
            "queries": len(statements),
            "writes": len(writes),
            "ms_in_database": round(sum(ns for _, ns in statements) / 1e6, 2),
            "ms_in_writes": round(sum(writes) / 1e6, 2),
        }


def add_history(interaction: Any, count: int, *, content_chars: int = 200) -> None:
    """Store `count` alternating user/assistant messages, oldest first, without replies."""
    from datetime import timedelta

    from django.utils import timezone

    from messages_app.models import Message, MessageRole

    start = timezone.now() - timedelta(seconds=count + 1)
    text = ("Some earlier turn of the conversation, long enough to be realistic. " * 10)[:content_chars]
    Message.objects.bulk_create(
        [
            Message(
                interaction=interaction,
                role=MessageRole.USER if index % 2 == 0 else MessageRole.ASSISTANT,
                content=f"{index}: {text}",
                created_at=start + timedelta(seconds=index),
            )
            for index in range(count)
        ],
        batch_size=500,
    )
    type(interaction).objects.filter(pk=interaction.pk).update(message_count=count)


@contextmanager
def openai_provider(base_url: str) -> Iterator[None]:
    """Point the service's real OpenAI SDK provider at `base_url` (settings as in production)."""
    from django.test import override_settings

    with override_settings(LLM_PROVIDER="openai", OPENAI_API_KEY="x", OPENAI_BASE_URL=base_url):
        yield


def raw_client(base_url: str) -> Any:
    """The provider's SDK client as the service builds it, without the service."""
    import openai
    from django.conf import settings

    return openai.OpenAI(
        base_url=base_url,
        api_key="x",
        timeout=openai.Timeout(settings.LLM_TIMEOUT_SECONDS, connect=settings.LLM_CONNECT_TIMEOUT_SECONDS),
        max_retries=settings.LLM_MAX_RETRIES,
    )


def raw_payload() -> dict[str, Any]:
    """What the service sends for the first user message of a bench interaction."""
    from django.conf import settings

    return {
        "model": "bench-model",
        "messages": [{"role": "system", "content": PROMPT}, {"role": "user", "content": USER_TEXT}],
        "max_tokens": settings.LLM_MAX_OUTPUT_TOKENS,
    }


def check_payload_matches(ctx: Context) -> None:
    """The raw SDK baseline must send what the service sends, or the ratio compares different work."""
    from llm.prompts import conversation_build
    from messages_app.models import Message, MessageRole
    from messages_app.selectors import message_history_newest_first

    interaction = ctx.new_interaction()
    ctx.post_message(ctx.messages_url(interaction))
    user_message = Message.objects.get(interaction=interaction, role=MessageRole.USER)
    sent = conversation_build(
        interaction=interaction,
        history_newest_first=message_history_newest_first(interaction=interaction, up_to=user_message),
    )
    if sent != raw_payload()["messages"]:
        raise RuntimeError(f"the raw SDK payload differs from what the service sends: {sent!r}")


# --- Benchmarks --------------------------------------------------------------------------


def bench_api_overhead(ctx: Context, profile: Profile) -> list[Row]:
    """1. POST a user message and get the stored reply (offline provider) vs GET the interaction."""
    from django.urls import reverse

    detail_url = reverse("interaction-detail", args=[str(ctx.new_interaction().pk)])

    def get_detail(_: object) -> None:
        ctx.expect(ctx.client.get(detail_url), 200)

    def post(url: str) -> None:
        ctx.post_message(url)

    def fresh_url() -> str:
        return ctx.messages_url(ctx.new_interaction())

    def baseline() -> float:
        ctx.reset_throttle()
        return time_calls(get_detail, profile.reps) * 1000

    def subject() -> float:
        ctx.reset_throttle()
        return time_calls(post, profile.reps, prepare=fresh_url) * 1000

    get_detail(None)
    post(fresh_url())
    base, subj, ratio = interleaved(baseline, subject, profile.rounds)
    ctx.reset_throttle()
    counted_url = fresh_url()
    return [
        Row(
            name="api_post_reply_vs_get_detail",
            description="POST a user message and get the stored reply (offline provider) vs GET the interaction",
            unit="ms/request",
            baseline_label="GET /interactions/{id}/",
            subject_label="POST /interactions/{id}/messages/",
            baseline=base,
            subject=subj,
            ratio=ratio,
            rounds=profile.rounds,
            notes={
                "get_detail": ctx.database_work(lambda: get_detail(None)),
                "post_message": ctx.database_work(lambda: post(counted_url)),
            },
        )
    ]


@dataclass(frozen=True)
class SdkCase:
    name: str
    kind: str
    server: FakeOpenAIProcess
    stream: bool
    reps: int


def bench_openai_overhead(
    ctx: Context, profile: Profile, short: FakeOpenAIProcess, long: FakeOpenAIProcess
) -> list[Row]:
    """2. POST through the API (real openai SDK to the loopback fake) vs the same raw SDK call."""
    import openai

    payload = raw_payload()

    def fresh_url() -> str:
        return ctx.messages_url(ctx.new_interaction())

    def api_complete(url: str) -> None:
        reply = ctx.post_message(url).json()["reply"]
        assert reply["status"] == "completed", reply

    def api_stream(url: str) -> None:
        ctx.post_message_streamed(url)

    cases = (
        SdkCase("openai_post_vs_raw_sdk", "5-word reply, not streamed", short, False, profile.reps),
        SdkCase("openai_stream_post_vs_raw_sdk_stream", "5-word reply, streamed", short, True, profile.reps),
        SdkCase(
            "openai_long_stream_post_vs_raw_sdk_stream",
            f"{LONG_REPLY_WORDS}-word reply, streamed",
            long,
            True,
            max(1, profile.reps // 4),
        ),
    )
    results = []
    for case in cases:
        client = raw_client(case.server.base_url)

        # The SDK call the provider makes (llm/providers.py): the answer as decoded JSON.
        def raw(_: object, client: Any = client, stream: bool = case.stream) -> None:
            if stream:
                events = client.post(
                    "/chat/completions",
                    body={**payload, "stream": True, "stream_options": {"include_usage": True}},
                    cast_to=object,
                    stream=True,
                    stream_cls=openai.Stream[object],
                )
                with events:
                    for _event in events:
                        pass
            else:
                answer = client.post("/chat/completions", body=payload, cast_to=object)
                assert answer["choices"][0]["message"]["content"]

        api = api_stream if case.stream else api_complete

        def baseline(raw: Callable[[Any], None] = raw, reps: int = case.reps) -> float:
            return time_calls(raw, reps) * 1000

        def subject(api: Callable[[str], None] = api, reps: int = case.reps) -> float:
            ctx.reset_throttle()
            return time_calls(api, reps, prepare=fresh_url) * 1000

        with openai_provider(case.server.base_url):
            check_payload_matches(ctx)
            raw(None)
            api(fresh_url())
            base, subj, ratio = interleaved(baseline, subject, profile.rounds)
        ctx.reset_throttle()
        results.append(
            Row(
                name=case.name,
                description=f"API reply via the openai SDK to the loopback fake vs the raw SDK call ({case.kind})",
                unit="ms/request",
                baseline_label="raw openai SDK create(" + ("stream=True" if case.stream else "") + ")",
                subject_label="POST .../messages/" + ("?stream=true, events consumed" if case.stream else ""),
                baseline=base,
                subject=subj,
                ratio=ratio,
                rounds=profile.rounds,
                notes={"added_ms_per_request": subj - base, "reps_per_round": case.reps},
            )
        )
    return results


def bench_message_page(ctx: Context, profile: Profile) -> list[Row]:
    """3. GET a 100-message page of a 500-message interaction: warm vs cold cache, per backend."""
    from django.core.cache import cache
    from django.test import override_settings

    interaction = ctx.new_interaction()
    add_history(interaction, profile.page_messages)
    url = f"{ctx.messages_url(interaction)}?limit=100"

    def get_page(_: object) -> None:
        body = ctx.expect(ctx.client.get(url), 200).json()
        assert len(body["data"]) == 100

    def measure(backend: str) -> Row:
        def cold() -> float:
            # cache.clear() also empties the throttle history.
            return time_calls(get_page, profile.reps, prepare=cache.clear) * 1000

        def warm() -> float:
            ctx.reset_throttle()
            get_page(None)
            return time_calls(get_page, profile.reps) * 1000

        cache.clear()
        get_page(None)
        cache.clear()
        queries_cold = ctx.count_queries(lambda: get_page(None))
        queries_warm = ctx.count_queries(lambda: get_page(None))
        base, subj, ratio = interleaved(cold, warm, profile.rounds)
        return Row(
            name=f"messages_page_{backend}_warm_vs_cold",
            description=(
                f"GET ?limit=100 on an interaction with {profile.page_messages} messages, {backend} cache: "
                "cached page vs cache cleared before each request"
            ),
            unit="ms/request",
            baseline_label="cold (cache cleared)",
            subject_label="warm (page cached)",
            baseline=base,
            subject=subj,
            ratio=ratio,
            rounds=profile.rounds,
            notes={"queries_cold": queries_cold, "queries_warm": queries_warm},
        )

    results = [measure("locmem")]
    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        results.append(
            Row(
                name="messages_page_redis_warm_vs_cold",
                description=(
                    f"GET ?limit=100 on an interaction with {profile.page_messages} messages, redis cache: "
                    "cached page vs cache cleared before each request"
                ),
                unit="ms/request",
                baseline_label="cold (cache cleared)",
                subject_label="warm (page cached)",
                skipped="redis-server is not installed (Debian package redis-server, scripts/install-system-deps)",
            )
        )
        return results

    from tests.conftest import RedisProcess, redis_cache_settings

    redis = RedisProcess().start()
    try:
        # override_settings(CACHES=...) makes Django drop its cache connections on entry and exit.
        with override_settings(CACHES=redis_cache_settings(redis.url)):
            results.append(measure("redis"))
    finally:
        redis.cleanup()
    cache.clear()
    return results


def bench_prompt_build(ctx: Context, profile: Profile) -> list[Row]:
    """4. conversation_build() time and peak memory per call for growing histories vs 10 messages."""
    from interactions.models import Interaction
    from llm.prompts import conversation_build
    from messages_app.models import Message, MessageRole, MessageStatus

    interaction = Interaction(owner=ctx.user, model_name="bench-model", prompt=PROMPT)
    text = "An earlier turn of the conversation with a realistic length of a couple of sentences. " * 2
    histories = {
        size: [
            Message(
                interaction=interaction,
                role=MessageRole.USER if index % 2 == 0 else MessageRole.ASSISTANT,
                content=f"{index}: {text}",
                status=MessageStatus.COMPLETED,
            )
            for index in reversed(range(size))
        ]
        for size in PROMPT_SIZES
    }
    kept = {
        size: len(conversation_build(interaction=interaction, history_newest_first=histories[size]))
        for size in PROMPT_SIZES
    }

    def per_call_us(size: int) -> Callable[[], float]:
        calls = max(20, profile.prompt_calls * 10 // size)
        history = histories[size]

        def round_() -> float:
            started = time.perf_counter_ns()
            for _ in range(calls):
                conversation_build(interaction=interaction, history_newest_first=history)
            return (time.perf_counter_ns() - started) / calls / 1000

        return round_

    def per_call_bytes(size: int) -> Callable[[], float]:
        history = histories[size]
        return lambda: float(
            peak_bytes(lambda: conversation_build(interaction=interaction, history_newest_first=history))
        )

    def compare(
        size: int, kind: str, unit: str, what: str, measure: Callable[[int], Callable[[], float]], rounds: int
    ) -> Row:
        base, subj, ratio = interleaved(measure(PROMPT_SIZES[0]), measure(size), rounds)
        return Row(
            name=f"prompt_build_{kind}_{size}_vs_10",
            description=f"conversation_build() {what} per call, {size} vs 10 history messages, default budget",
            unit=unit,
            baseline_label="10 messages",
            subject_label=f"{size} messages",
            baseline=base,
            subject=subj,
            ratio=ratio,
            rounds=rounds,
            notes={"history_ratio": size / PROMPT_SIZES[0], "messages_kept": kept[size]},
        )

    results = [compare(size, "time", "µs/call", "time", per_call_us, profile.rounds) for size in PROMPT_SIZES[1:]]
    with tracing():
        results += [
            compare(size, "peak_memory", "bytes/call", "tracemalloc peak", per_call_bytes, profile.memory_rounds)
            for size in PROMPT_SIZES[1:]
        ]
    return results


def bench_stream_memory(ctx: Context, profile: Profile, server: FakeOpenAIProcess) -> list[Row]:
    """5. tracemalloc peak of a streamed POST vs a non-streamed POST of the same long reply."""

    def fresh_url() -> str:
        return ctx.messages_url(ctx.new_interaction())

    def complete(url: str) -> Any:
        return ctx.post_message(url)

    def check_complete(response: Any) -> None:
        reply = response.json()["reply"]
        assert reply["status"] == "completed", reply["status"]
        assert len(reply["content"].split()) == LONG_REPLY_WORDS

    def streamed(url: str) -> bytes:
        return ctx.post_message_streamed(url)  # checks that it ends with reply.completed

    def one(call: Callable[[str], Any], check: Callable[[Any], None] | None = None) -> Callable[[], float]:
        def round_() -> float:
            ctx.reset_throttle()
            url = fresh_url()
            answers: list[Any] = []
            peak = peak_bytes(lambda: answers.append(call(url)))
            if check is not None:
                check(answers[0])  # after the measurement: parsing the answer is the client's work
            return float(peak)

        return round_

    with openai_provider(server.base_url):
        check_complete(complete(fresh_url()))
        streamed(fresh_url())
        with tracing():
            base, subj, ratio = interleaved(one(complete, check_complete), one(streamed), profile.memory_rounds)
    ctx.reset_throttle()
    return [
        Row(
            name="stream_reply_peak_memory_vs_non_streamed",
            description=f"tracemalloc peak while POSTing for a {LONG_REPLY_WORDS}-word reply: streamed vs not",
            unit="bytes/request",
            baseline_label="POST (JSON answer)",
            subject_label="POST ?stream=true (SSE consumed)",
            baseline=base,
            subject=subj,
            ratio=ratio,
            rounds=profile.memory_rounds,
            notes={"reply_words": LONG_REPLY_WORDS, "reply_chars": len(reply_text(LONG_REPLY_WORDS))},
        )
    ]


def bench_long_history(ctx: Context, profile: Profile) -> list[Row]:
    """6. POST (offline provider) on an interaction with a long history vs a fresh one."""
    from llm.prompts import conversation_build
    from messages_app.models import Message
    from messages_app.selectors import message_history_newest_first

    long_interaction = ctx.new_interaction()
    add_history(long_interaction, profile.long_history)
    long_url = ctx.messages_url(long_interaction)

    def post(url: str) -> None:
        ctx.post_message(url)

    def baseline() -> float:
        ctx.reset_throttle()
        return time_calls(post, profile.reps, prepare=lambda: ctx.messages_url(ctx.new_interaction())) * 1000

    def subject() -> float:
        ctx.reset_throttle()
        return time_calls(post, profile.reps, prepare=lambda: long_url) * 1000

    post(long_url)
    base, subj, ratio = interleaved(baseline, subject, profile.rounds)
    ctx.reset_throttle()
    last_user = Message.objects.filter(interaction=long_interaction, role="user").order_by("-created_at", "-id")[0]
    rows_read = 0
    sent: list[dict[str, str]] = []

    def counted(rows: Iterator[Message]) -> Iterator[Message]:
        nonlocal rows_read
        for row in rows:
            rows_read += 1
            yield row

    def build_prompt(_: object) -> None:
        nonlocal rows_read
        rows_read = 0
        history = message_history_newest_first(interaction=long_interaction, up_to=last_user)
        sent[:] = conversation_build(interaction=long_interaction, history_newest_first=counted(history))

    ms_history_read_and_build = statistics.median(time_calls(build_prompt, 1) * 1000 for _ in range(profile.reps))
    return [
        Row(
            name="api_post_reply_long_history_vs_empty",
            description=(
                f"POST a user message (offline provider) to an interaction with {profile.long_history}+ messages "
                "vs a fresh interaction"
            ),
            unit="ms/request",
            baseline_label="fresh interaction",
            subject_label=f"{profile.long_history}+ messages",
            baseline=base,
            subject=subj,
            ratio=ratio,
            rounds=profile.rounds,
            notes={
                "history_rows_stored": Message.objects.filter(interaction=long_interaction).count(),
                "history_rows_read_per_reply": rows_read,
                "messages_sent_to_model": len(sent),
                "ms_history_read_and_prompt_build": ms_history_read_and_build,
                "post_long_history": ctx.database_work(lambda: post(long_url)),
            },
        )
    ]


def bench_interaction_delete(ctx: Context, profile: Profile) -> list[Row]:
    """7. Delete an interaction of many messages vs one of 100: time, statements, peak memory."""
    from interactions.services import interaction_delete

    observed: dict[int, dict[str, Any]] = {}

    def deleting(messages: int) -> Callable[[], float]:
        def measure() -> float:
            interaction = ctx.new_interaction()
            add_history(interaction, messages)
            started = time.perf_counter()
            observed[messages] = ctx.database_work(lambda: interaction_delete(interaction=interaction))
            return (time.perf_counter() - started) * 1000

        return measure

    base, subj, ratio = interleaved(deleting(100), deleting(profile.delete_messages), profile.delete_rounds)
    with tracing():
        for messages in (100, profile.delete_messages):
            interaction = ctx.new_interaction()
            add_history(interaction, messages)
            peak = peak_bytes(lambda: interaction_delete(interaction=interaction))  # noqa: B023 (called at once)
            observed[messages]["peak_kib"] = round(peak / 1024, 1)
    return [
        Row(
            name=f"interaction_delete_{profile.delete_messages}_vs_100_messages",
            description=f"delete an interaction of {profile.delete_messages} messages vs one of 100 (in process)",
            unit="ms/delete",
            baseline_label="100 messages",
            subject_label=f"{profile.delete_messages} messages",
            baseline=base,
            subject=subj,
            ratio=ratio,
            rounds=profile.delete_rounds,
            notes={"at_100": observed[100], f"at_{profile.delete_messages}": observed[profile.delete_messages]},
        )
    ]


# --- Report ------------------------------------------------------------------------------


def print_table(results: list[Row]) -> None:
    headers = ("name", "baseline", "subject", "ratio", "unit")
    rows = [
        (r.name, "skipped", "-", "-", r.unit)
        if r.skipped
        else (r.name, fmt(r.baseline), fmt(r.subject), f"{r.ratio:.2f}x" if r.ratio else "-", r.unit)
        for r in results
    ]
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers))]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    print()
    for r in results:
        if r.skipped:
            print(f"{r.name}: SKIPPED, {r.skipped}")
        else:
            print(f"{r.name}: baseline = {r.baseline_label}; subject = {r.subject_label}")
            if r.notes:
                print(f"    {json.dumps(r.notes, default=str)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="minimal iterations (smoke test)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write results ({DEFAULT_JSON})")
    args = parser.parse_args()
    profile = QUICK if args.quick else DEFAULT

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="chat-bench-"))
    short_server = long_server = None
    try:
        django_setup(workdir)
        ctx = Context()
        short_server = FakeOpenAIProcess(words=5)
        long_server = FakeOpenAIProcess(words=LONG_REPLY_WORDS)
        results: list[Row] = []
        steps: list[tuple[str, Callable[[], list[Row]]]] = [
            ("API overhead", lambda: bench_api_overhead(ctx, profile)),
            ("reply path vs raw openai SDK", lambda: bench_openai_overhead(ctx, profile, short_server, long_server)),
            ("message page cache", lambda: bench_message_page(ctx, profile)),
            ("prompt building", lambda: bench_prompt_build(ctx, profile)),
            ("streaming memory", lambda: bench_stream_memory(ctx, profile, long_server)),
            ("long history", lambda: bench_long_history(ctx, profile)),
            ("interaction delete", lambda: bench_interaction_delete(ctx, profile)),
        ]
        for label, step in steps:
            step_started = time.monotonic()
            results.extend(step())
            print(f"[{time.monotonic() - step_started:5.1f}s] {label}", file=sys.stderr, flush=True)
    finally:
        for server in (short_server, long_server):
            if server is not None:
                server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.monotonic() - started
    print()
    print_table(results)
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "profile": asdict(profile),
        "elapsed_seconds": round(elapsed, 1),
        "machine": machine(),
        "ratio": "subject / baseline, median of per-round ratios; rounds alternate AB BA AB ...",
        "benchmarks": [asdict(r) for r in results],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\n{len(results)} results in {elapsed:.1f}s, written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
