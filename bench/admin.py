"""The staff admin at scale: its pages with LARGE messages against the same pages with SMALL.

Run: .venv/bin/python bench/admin.py [--quick] [--json PATH]

Two SQLite databases are built in a temporary directory, alike except for size: "small" holds
one conversation of 100 messages, "large" the same plus one of 100,000 (the default profile;
--quick uses 5,000). Each page is requested as a logged-in superuser from one database and then
the other, round by round in alternating order (AB BA AB ...); the medians of time and response
bytes, and of the per-round time ratios, are reported. The admin pages should cost the same on
both: a ratio near 1.

It also budgets the usage write that each reply's final write adds (usage_record on an existing
bucket against message_reply_update, the claim-fenced write of the reply's outcome), interleaved
the same way.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import django_setup_in_process, interleaved  # noqa: E402

SMALL = 100
LARGE = 100_000
QUICK_LARGE = 5_000
DEFAULT_JSON = ROOT / "bench" / "results" / "admin.json"
PASSWORD = "bench-password-123"  # noqa: S105 (a throwaway database)


def django_setup(workdir: Path) -> None:
    django_setup_in_process(workdir / "small.sqlite3")


def use_database(path: Path) -> None:
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = str(path)


def build(path: Path, *, long_conversation: int) -> dict[str, str]:
    """Migrate `path` and store the conversations; returns the ids the pages need."""
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from interactions.models import Interaction
    from messages_app.models import Message, MessageRole, MessageStatus

    use_database(path)
    call_command("migrate", verbosity=0, interactive=False)
    User.objects.create_superuser(username="root", email="root@example.com", password=PASSWORD)
    owner = User.objects.create_user(username="alice", password=PASSWORD)
    text = "Some earlier turn of the conversation, long enough to be realistic. " * 3
    ids = {}
    for name, count in (("short", SMALL), ("long", long_conversation)):
        if not count:
            continue
        interaction = Interaction.objects.create(owner=owner, model_name="m", title=f"{name} conversation")
        start = datetime.now(UTC) - timedelta(seconds=count + 1)
        batch: list[Message] = []
        for index in range(count):
            failed = index % 50 == 49
            batch.append(
                Message(
                    interaction=interaction,
                    role=MessageRole.USER if index % 2 == 0 else MessageRole.ASSISTANT,
                    content="" if failed else f"{index}: {text}",
                    status=MessageStatus.FAILED if failed else MessageStatus.COMPLETED,
                    error_code="upstream_timeout" if failed else "",
                    created_at=start + timedelta(seconds=index),
                )
            )
            if len(batch) == 5000:
                Message.objects.bulk_create(batch)
                batch = []
        Message.objects.bulk_create(batch)
        Interaction.objects.filter(pk=interaction.pk).update(message_count=count)
        ids[name] = str(interaction.pk)
    return ids


def measure_page(client: Any, url: str) -> tuple[float, int]:
    started = time.perf_counter()
    response = client.get(url)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code} {response.get('Location', '')}")
    return elapsed, len(body)


def interleaved_pages(client: Any, small: tuple[Path, str], large: tuple[Path, str], rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"small": [], "large": []}
    sizes: dict[str, list[int]] = {"small": [], "large": []}
    ratios: list[float] = []
    order = [("small", small), ("large", large)]
    for index in range(rounds + 1):
        measured: dict[str, float] = {}
        for label, (path, url) in order if index % 2 == 0 else list(reversed(order)):
            use_database(path)
            seconds, size = measure_page(client, url)
            measured[label] = seconds
            if index:  # the first round warms both up and is not counted
                times[label].append(seconds)
                sizes[label].append(size)
        if index:
            ratios.append(measured["large"] / measured["small"])
    return {
        "small_ms": statistics.median(times["small"]) * 1000,
        "large_ms": statistics.median(times["large"]) * 1000,
        "time_ratio": statistics.median(ratios),
        "small_bytes": statistics.median(sizes["small"]),
        "large_bytes": statistics.median(sizes["large"]),
        "bytes_ratio": statistics.median(sizes["large"]) / statistics.median(sizes["small"]),
    }


def usage_write_budget(path: Path, rounds: int, reps: int) -> dict[str, float]:
    """usage_record (an existing bucket: one conditional update) against the write that stores
    a reply's outcome under its claim (message_reply_update: the fenced update of the reply and
    the interaction's version; the final write, message_reply_finish, is that plus releasing
    the slot plus usage_record)."""
    from django.contrib.auth.models import User

    from interactions.models import Interaction
    from interactions.services import interaction_reply_slot_claim
    from messages_app.models import Message, MessageRole, MessageStatus
    from messages_app.services import message_reply_update
    from usage.services import usage_record

    use_database(path)
    owner = User.objects.get(username="alice")
    interaction = Interaction.objects.filter(owner=owner).first()
    if interaction is None:
        raise RuntimeError("no interaction to write to")
    claim = interaction_reply_slot_claim(interaction_id=interaction.pk)
    reply = Message.objects.create(
        interaction=interaction,
        role=MessageRole.ASSISTANT,
        content="",
        status=MessageStatus.IN_PROGRESS,
        claim_token=claim.token,
    )
    usage_record(user_id=owner.pk, model="m", status="completed", prompt_tokens=1, completion_tokens=1)

    def final_write() -> float:
        started = time.perf_counter()
        for _ in range(reps):
            message_reply_update(reply=reply, claim=claim, content="done", total_tokens=3)
        return (time.perf_counter() - started) / reps

    def usage_write() -> float:
        started = time.perf_counter()
        for _ in range(reps):
            usage_record(user_id=owner.pk, model="m", status="completed", prompt_tokens=2, completion_tokens=1)
        return (time.perf_counter() - started) / reps

    pairs = interleaved(final_write, usage_write, rounds)
    finals = [final for final, _ in pairs]
    usages = [usage for _, usage in pairs]
    ratios = [usage / final for final, usage in pairs]
    return {
        "final_write_ms": statistics.median(finals) * 1000,
        "usage_write_ms": statistics.median(usages) * 1000,
        "time_ratio": statistics.median(ratios),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_LARGE} messages instead of {LARGE}, two rounds")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    arguments = parser.parse_args()
    large_count = QUICK_LARGE if arguments.quick else LARGE
    rounds = 2 if arguments.quick else 7

    with tempfile.TemporaryDirectory(prefix="bench-admin-") as directory:
        workdir = Path(directory)
        django_setup(workdir)
        from django.test import Client
        from django.test.utils import setup_test_environment

        setup_test_environment()
        small_db, large_db = workdir / "small.sqlite3", workdir / "large.sqlite3"
        built = time.perf_counter()
        small_ids = build(small_db, long_conversation=0)
        large_ids = build(large_db, long_conversation=large_count)
        build_seconds = time.perf_counter() - built

        client = Client()
        pages: dict[str, Callable[[dict[str, str]], str]] = {
            "interaction_change_page": lambda ids: (
                f"/admin/interactions/interaction/{ids.get('long', ids['short'])}/change/"
            ),
            "interaction_messages_changelist": (
                lambda ids: f"/admin/messages_app/message/?interaction={ids.get('long', ids['short'])}"
            ),
            "messages_changelist": lambda ids: "/admin/messages_app/message/",
            "messages_changelist_failed": lambda ids: "/admin/messages_app/message/?status__exact=failed",
            "interactions_changelist": lambda ids: "/admin/interactions/interaction/",
            "interactions_changelist_failed_replies": lambda ids: "/admin/interactions/interaction/?replies=failed",
            "usage_changelist": lambda ids: "/admin/usage/usagebucket/",
        }
        # One session cookie for both databases: the session row is copied into the other, with
        # the password hash it was signed with (logging in may re-hash the password).
        from django.contrib.auth.models import User
        from django.contrib.sessions.models import Session

        use_database(large_db)
        if not client.login(username="root", password=PASSWORD):
            raise RuntimeError("could not log in")
        session = Session.objects.get(pk=client.session.session_key)
        password_hash = User.objects.get(username="root").password
        use_database(small_db)
        User.objects.filter(username="root").update(password=password_hash)
        Session.objects.create(
            session_key=session.session_key, session_data=session.session_data, expire_date=session.expire_date
        )
        results = {}
        for name, url_for in pages.items():
            results[name] = interleaved_pages(
                client, (small_db, url_for(small_ids)), (large_db, url_for(large_ids)), rounds
            )
        results["usage_record_vs_reply_final_write"] = usage_write_budget(
            large_db, rounds, 20 if arguments.quick else 200
        )

    report = {
        "quick": arguments.quick,
        "small_messages": SMALL,
        "large_messages": large_count,
        "rounds": rounds,
        "build_seconds": round(build_seconds, 1),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "results": results,
    }
    arguments.json.parent.mkdir(parents=True, exist_ok=True)
    arguments.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'page':42} {'small ms':>9} {'large ms':>9} {'ratio':>6} {'small KB':>9} {'large KB':>9} {'ratio':>6}")
    for name, row in results.items():
        if "small_ms" in row:
            print(
                f"{name:42} {row['small_ms']:9.1f} {row['large_ms']:9.1f} {row['time_ratio']:6.2f} "
                f"{row['small_bytes'] / 1024:9.1f} {row['large_bytes'] / 1024:9.1f} {row['bytes_ratio']:6.2f}"
            )
        else:
            print(
                f"{name:42} final write {row['final_write_ms']:.3f} ms, usage write {row['usage_write_ms']:.3f} ms, "
                f"ratio {row['time_ratio']:.2f}"
            )
    print(f"load average {os.getloadavg()}; {SMALL} vs {large_count} messages; {rounds} rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
