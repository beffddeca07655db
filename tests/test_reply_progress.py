"""How often, and how much, a reply's text is written while it is generated."""

import itertools

import pytest

from llm.progress import ReplyProgress


def run(deltas: list[str]) -> tuple[ReplyProgress, list[str]]:
    writes: list[str] = []
    progress = ReplyProgress(reply_id="r", attempt="a", store=writes.append)  # type: ignore[arg-type]
    for delta in deltas:
        progress.add(delta)
    return progress, writes


@pytest.mark.parametrize("length", [1_000, 20_000, 200_000])
def test_characters_written_stay_within_a_small_multiple_of_the_reply(settings, length):
    # The worst case for the time rule: a write would be due at every delta.
    settings.LLM_REPLY_PROGRESS_INTERVAL_SECONDS = 0
    settings.LLM_REPLY_PROGRESS_GROWTH = 0.25

    progress, writes = run(["abcd"] * (length // 4))

    assert progress.text == "abcd" * (length // 4)
    assert sum(len(w) for w in writes) <= 5 * length
    assert len(writes) <= 70, "progress writes must grow with the log of the reply's length"
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(writes))


def test_without_the_growth_rule_the_char_rule_writes_every_n_characters(settings):
    settings.LLM_REPLY_PROGRESS_INTERVAL_SECONDS = 3600
    settings.LLM_REPLY_PROGRESS_CHARS = 100
    settings.LLM_REPLY_PROGRESS_GROWTH = 0

    _, writes = run(["0123456789"] * 50)

    assert [len(w) for w in writes] == [100, 200, 300, 400, 500]


def test_nothing_is_written_before_the_interval_or_the_character_count_is_reached(settings):
    settings.LLM_REPLY_PROGRESS_INTERVAL_SECONDS = 3600
    settings.LLM_REPLY_PROGRESS_CHARS = 400

    progress, writes = run(["word "] * 79)

    assert writes == []
    assert progress.length == 395
