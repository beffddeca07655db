"""Usage: a daily bucket per user and model, added to atomically by each reply, shown to staff
with the totals of a chosen period."""

import threading
from datetime import date, timedelta

import pytest
from django.contrib.auth.models import User
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.factories import UserFactory
from usage.models import UsageBucket
from usage.selectors import usage_for_user
from usage.services import usage_record

DAY = date(2025, 5, 4)


def bucket(user, model="m", day=DAY) -> UsageBucket:
    return UsageBucket.objects.get(user=user, model=model, day=day)


@pytest.mark.django_db
def test_the_first_reply_of_a_day_creates_the_bucket_and_the_next_ones_add_to_it(user):
    usage_record(user_id=user.pk, model="m", status="completed", prompt_tokens=10, completion_tokens=5, day=DAY)
    usage_record(user_id=user.pk, model="m", status="failed", prompt_tokens=None, completion_tokens=None, day=DAY)
    usage_record(user_id=user.pk, model="m", status="incomplete", prompt_tokens=3, completion_tokens=4, day=DAY)

    stored = bucket(user)
    assert (stored.replies_completed, stored.replies_incomplete, stored.replies_failed) == (1, 1, 1)
    assert (stored.prompt_tokens, stored.completion_tokens) == (13, 9)
    assert UsageBucket.objects.count() == 1


@pytest.mark.django_db
def test_each_user_model_and_day_has_its_own_bucket(user, other_user):
    usage_record(user_id=user.pk, model="a", status="completed", prompt_tokens=1, completion_tokens=1, day=DAY)
    usage_record(user_id=user.pk, model="b", status="completed", prompt_tokens=1, completion_tokens=1, day=DAY)
    usage_record(
        user_id=user.pk, model="a", status="completed", prompt_tokens=1, completion_tokens=1, day=DAY + timedelta(1)
    )
    usage_record(user_id=other_user.pk, model="a", status="completed", prompt_tokens=1, completion_tokens=1, day=DAY)

    assert UsageBucket.objects.count() == 4


@pytest.mark.django_db
@pytest.mark.sqlite_only(reason="reads the SQL; tests/test_mongodb_contract_admin.py proves the MongoDB update")
def test_an_existing_bucket_is_added_to_in_one_update_without_reading_it(user):
    usage_record(user_id=user.pk, model="m", status="completed", prompt_tokens=1, completion_tokens=1, day=DAY)

    with CaptureQueriesContext(connection) as queries:
        usage_record(user_id=user.pk, model="m", status="completed", prompt_tokens=2, completion_tokens=3, day=DAY)

    (update,) = queries
    assert update["sql"].startswith("UPDATE")
    assert '"replies_completed" + 1' in update["sql"].replace("usage_usagebucket.", "")


@pytest.mark.django_db
def test_only_finished_replies_are_recorded(user):
    with pytest.raises(ValueError, match="finished replies"):
        usage_record(user_id=user.pk, model="m", status="in_progress", prompt_tokens=0, completion_tokens=0)


@pytest.mark.django_db(transaction=True)
def test_replies_recorded_at_the_same_time_lose_no_count(tmp_path):
    """Threads race to create the same bucket: the unique index refuses all inserts but one,
    and the losers add to the winner's bucket."""
    user = UserFactory(username="racer")
    threads_count, per_thread = 6, 5
    start = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def record() -> None:
        try:
            start.wait(timeout=10)
            for _ in range(per_thread):
                usage_record(user_id=user.pk, model="m", status="completed", prompt_tokens=2, completion_tokens=1)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=record) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    (stored,) = UsageBucket.objects.filter(user=user)
    assert stored.replies_completed == threads_count * per_thread
    assert stored.prompt_tokens == 2 * threads_count * per_thread


@pytest.mark.django_db
def test_a_users_usage_since_a_day_is_what_a_quota_would_check(user):
    for offset in range(5):
        usage_record(
            user_id=user.pk,
            model="m",
            status="completed",
            prompt_tokens=10,
            completion_tokens=1,
            day=DAY - timedelta(offset),
        )

    assert usage_for_user(user_id=user.pk, since=DAY - timedelta(days=1))["prompt_tokens"] == 20


# --- The staff view ----------------------------------------------------------------------------


@pytest.fixture
def staff_client(client, db):
    client.force_login(User.objects.create_superuser(username="root", email="root@example.com", password="x" * 12))
    return client


def test_staff_see_buckets_and_the_totals_of_the_chosen_period(staff_client, user, other_user):
    for offset in range(3):
        usage_record(
            user_id=user.pk,
            model="m1",
            status="completed",
            prompt_tokens=10,
            completion_tokens=2,
            day=DAY - timedelta(offset),
        )
    usage_record(user_id=user.pk, model="m2", status="failed", prompt_tokens=None, completion_tokens=None, day=DAY)
    usage_record(user_id=other_user.pk, model="m1", status="incomplete", prompt_tokens=5, completion_tokens=5, day=DAY)

    period = f"day_from={(DAY - timedelta(days=1)).isoformat()}&day_to={DAY.isoformat()}"
    response = staff_client.get(f"/admin/usage/usagebucket/?{period}")

    assert response.status_code == 200
    assert response.context["usage_totals"] == {
        "user_messages": 0,
        "replies_completed": 2,
        "replies_incomplete": 1,
        "replies_failed": 1,
        "replies_abandoned": 0,
        "prompt_tokens": 25,
        "completion_tokens": 9,
    }
    by_model = {row["model"]: row for row in response.context["usage_totals_by_model"]}
    assert by_model["m1"]["prompt_tokens"] == 25
    assert by_model["m2"]["replies_failed"] == 1
    assert "Totals of the selected period" in response.content.decode()

    alice_only = staff_client.get(f"/admin/usage/usagebucket/?{period}&username=alice&model=m1")
    assert alice_only.context["usage_totals"]["prompt_tokens"] == 20


def test_the_usage_page_reads_the_same_number_of_queries_for_any_number_of_buckets(staff_client, user):
    def page_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get("/admin/usage/usagebucket/").status_code == 200
        return len(queries)

    usage_record(user_id=user.pk, model="m", status="completed", prompt_tokens=1, completion_tokens=1, day=DAY)
    few = page_queries()
    for offset in range(1, 30):
        usage_record(
            user_id=user.pk,
            model="m",
            status="completed",
            prompt_tokens=1,
            completion_tokens=1,
            day=DAY - timedelta(offset),
        )

    assert page_queries() == few


def test_usage_buckets_are_read_only_for_staff(staff_client, user):
    usage_record(user_id=user.pk, model="m", status="completed", prompt_tokens=1, completion_tokens=1, day=DAY)
    stored = bucket(user)

    assert staff_client.get("/admin/usage/usagebucket/add/").status_code == 403
    assert staff_client.post(f"/admin/usage/usagebucket/{stored.pk}/delete/", {"post": "yes"}).status_code == 403


# --- Recorded by the reply's final write ---------------------------------------------------


def todays_bucket(interaction) -> UsageBucket:
    return UsageBucket.objects.get(user=interaction.owner, model=interaction.model_name, day=timezone.now().date())


@pytest.mark.django_db
def test_a_completed_reply_adds_one_reply_and_its_tokens_to_the_owners_bucket_of_the_day(api, interaction, fake_llm):
    api.post(f"/api/v1/interactions/{interaction.pk}/messages/", {"content": "hello"}, format="json")
    api.post(f"/api/v1/interactions/{interaction.pk}/messages/", {"content": "again"}, format="json")

    stored = todays_bucket(interaction)
    assert (stored.replies_completed, stored.replies_failed) == (2, 0)
    assert (stored.prompt_tokens, stored.completion_tokens) == (22, 14)


@pytest.mark.django_db
def test_a_failed_and_a_streamed_reply_are_counted_too(api, interaction, fake_llm):
    fake_llm.then(status=500)
    api.post(f"/api/v1/interactions/{interaction.pk}/messages/", {"content": "hello"}, format="json")
    streamed = api.post(f"/api/v1/interactions/{interaction.pk}/messages/?stream=true", {"content": "x"}, format="json")
    b"".join(streamed.streaming_content)

    stored = todays_bucket(interaction)
    assert (stored.replies_completed, stored.replies_failed) == (1, 1)
    assert stored.prompt_tokens == 11
