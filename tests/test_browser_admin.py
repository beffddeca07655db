"""Staff at work in a real headless Chromium (Debian's, driven by Playwright): log in, find the
conversation whose reply failed through the filter, read its bounded transcript with the failure
standing out, and export it."""

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from audit.models import StaffAccess
from interactions.models import Interaction
from messages_app.models import MessageRole, MessageStatus
from tests.factories import InteractionFactory, MessageFactory
from tests.test_browser import (  # noqa: F401 (fixtures)
    PASSWORD,
    admin_log_in,
    browser,
    context,
    live_host,
    page,
    playwright_instance,
    requests_made,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_staff_find_a_failed_reply_read_the_transcript_and_export_it(
    page: Page,  # noqa: F811 (the fixture imported above)
    live_server,
    settings,
    tmp_path: Path,
) -> None:  # type: ignore[no-untyped-def]
    settings.ADMIN_TRANSCRIPT_MESSAGES = 6
    User.objects.create_superuser(username="root", email="root@example.com", password=PASSWORD)
    healthy = InteractionFactory(title="All good")
    MessageFactory(interaction=healthy, role=MessageRole.USER, content="Hi")
    troubled = InteractionFactory(title="Trip to Lisbon")
    for index in range(10):
        MessageFactory(
            interaction=troubled,
            role=MessageRole.USER if index % 2 == 0 else MessageRole.ASSISTANT,
            content=f"Turn {index} about Lisbon",
        )
    MessageFactory(
        interaction=troubled,
        role=MessageRole.ASSISTANT,
        content="",
        status=MessageStatus.FAILED,
        error_code="upstream_timeout",
        error_message="the provider did not answer in time",
    )
    Interaction.objects.filter(pk=troubled.pk).update(message_count=11)

    admin_log_in(page, live_server, "root", PASSWORD)
    page.goto(f"{live_server.url}/admin/interactions/interaction/")
    filters = page.locator("#changelist-filter")
    filters.locator("details", has_text="By replies").get_by_role("link", name="failed", exact=True).click()

    results = page.locator("#result_list tbody tr")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("Trip to Lisbon")
    results.first.get_by_role("link", name="Trip to Lisbon").click()

    expect(page.get_by_role("heading", level=2, name="Trip to Lisbon")).to_be_visible()
    transcript = page.locator("#transcript")
    expect(page.locator(".transcript-summary")).to_contain_text("The latest 6 of 11 messages.")
    expect(transcript.locator("tbody tr")).to_have_count(6)
    expect(transcript).not_to_contain_text("Turn 4 about Lisbon")
    failed = transcript.locator("tr.transcript-problem")
    expect(failed).to_have_count(1)
    expect(failed.locator(".transcript-status")).to_have_text("failed")
    expect(failed.locator(".transcript-error")).to_contain_text("upstream_timeout")
    ok_background = transcript.locator("tr:not(.transcript-problem) td").first.evaluate(
        "cell => getComputedStyle(cell).backgroundColor"
    )
    failed_background = failed.locator("td").first.evaluate("cell => getComputedStyle(cell).backgroundColor")
    assert failed_background != ok_background, "the failed reply does not stand out"
    page.screenshot(path=str(tmp_path / "transcript.png"), full_page=True)
    assert StaffAccess.objects.filter(interaction_id=troubled.pk, action="view").exists()

    page.get_by_role("link", name="All 11 messages").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(11)

    page.goto(f"{live_server.url}/admin/interactions/interaction/?replies=failed")
    page.locator("#result_list tbody tr").first.locator("input.action-select").check()
    page.locator("select[name=action]").select_option("export_markdown")
    with page.expect_download() as download_info:
        page.locator("button[name=index]").click()
    exported = Path(download_info.value.path()).read_text()

    assert exported.startswith("# Trip to Lisbon\n")
    assert "Turn 0 about Lisbon" in exported, "the export holds the whole conversation"
    assert "> **FAILED**: `upstream_timeout` the provider did not answer in time" in exported
    assert StaffAccess.objects.filter(interaction_id=troubled.pk, action="export").exists()
