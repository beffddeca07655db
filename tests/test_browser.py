"""What a person sees in a real headless Chromium: the API docs and the admin.

The browser is Debian's Chromium driven by Playwright; nothing is downloaded. The pages are
served by pytest-django's live_server, which also serves the static files (drf-spectacular-sidecar
ships Swagger UI and Redoc, so the docs must render without the internet).
"""

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Request, Route, expect, sync_playwright

from messages_app.models import MessageRole, MessageStatus
from tests.factories import InteractionFactory, MessageFactory, UserFactory

CHROMIUM = Path("/usr/bin/chromium")
# This machine has no network: without these flags Chromium waits on connection attempts
# (QUIC probes, component updates, sync) and pages hang.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
PASSWORD = "correct horse battery staple"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def playwright_instance(django_db_setup) -> Iterator[Playwright]:  # type: ignore[no-untyped-def]
    """Playwright's sync API keeps an asyncio loop running in this thread while it is open.

    Django then refuses ORM calls from the test ("You cannot call this from an async context"),
    although nothing here runs inside that loop: the tests only call Playwright between queries.
    So the check is switched off, and only for as long as this module's Playwright runs; module
    scope ends the loop before other test modules use the database. The test database is set up
    first, before the loop starts.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            yield playwright


@pytest.fixture(scope="module")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install the Debian package `chromium` (apt-get install chromium)")
    browser = playwright_instance.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class RecordedRequests(list[str]):
    """Every URL the page asked for, in order, and those its Content-Security-Policy refused."""

    def __init__(self) -> None:
        super().__init__()
        self.refused_by_policy: set[str] = set()

    def leaving(self, host: str) -> list[str]:
        """The requests that went anywhere but `host`.

        data: and blob: URLs never leave the browser, and neither does a request that the
        page's own Content-Security-Policy refused: Chromium stops it before the network.
        """
        return [
            url
            for url in self
            if urlsplit(url).scheme not in ("data", "blob")
            and urlsplit(url).netloc != host
            and url not in self.refused_by_policy
        ]


@pytest.fixture
def live_host(live_server) -> str:  # type: ignore[no-untyped-def]
    return urlsplit(live_server.url).netloc


@pytest.fixture
def context(browser: Browser, live_host: str) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)

    # A request to another host fails at once instead of waiting for a network that is not
    # there; the test still sees it in the recorded requests.
    def only_live_server(route: Route) -> None:
        if urlsplit(route.request.url).netloc == live_host:
            route.continue_()
        else:
            route.abort()

    context.route("**/*", only_live_server)
    yield context
    context.close()


@pytest.fixture
def requests_made(context: BrowserContext) -> RecordedRequests:
    recorded = RecordedRequests()
    context.on("request", lambda request: recorded.append(request.url))

    def refused(request: Request) -> None:
        if request.failure == "csp":
            recorded.refused_by_policy.add(request.url)

    context.on("requestfailed", refused)
    return recorded


@pytest.fixture
def page(context: BrowserContext, requests_made: RecordedRequests) -> Iterator[Page]:
    """A page that must not break its Content-Security-Policy: every test checks, on every page it opens,
    that the browser reported no violation (Chromium reports each one on the console)."""
    page = context.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
    )
    yield page
    assert violations == [], "the page broke its Content-Security-Policy"
    assert requests_made.refused_by_policy == set()


def admin_log_in(page: Page, live_server, username: str, password: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.locator("input[type=submit]").click()


def test_swagger_ui_lists_the_api_operations_without_internet(
    page: Page, live_server, live_host: str, requests_made: RecordedRequests
) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server.url}/api/docs/")

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Chat backend API")
    paths = page.locator(".opblock-summary-path")
    expect(paths.filter(has_text="/api/v1/interactions/").first).to_be_visible()
    expect(paths.filter(has_text="/api/v1/interactions/{interaction_id}/messages/").first).to_be_visible()
    page.wait_for_load_state("networkidle")

    assert len(requests_made) > 1, "the page loaded no scripts or styles"
    assert requests_made.leaving(live_host) == []


def test_redoc_renders_the_api_reference(page: Page, live_server) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server.url}/api/redoc/")

    expect(page.get_by_role("heading", level=1)).to_contain_text("Chat backend API")
    expect(page.get_by_role("heading", name="Create an interaction")).to_be_visible()
    expect(page.get_by_role("heading", name="List the messages of an interaction, oldest first")).to_be_visible()


def test_redoc_makes_no_request_to_another_host(
    page: Page, live_server, live_host: str, requests_made: RecordedRequests
) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server.url}/api/redoc/")
    expect(page.get_by_role("heading", name="Create an interaction")).to_be_visible()
    page.wait_for_load_state("networkidle")

    assert len(requests_made) > 1, "the page loaded no scripts or styles"
    assert requests_made.leaving(live_host) == []


def test_staff_sees_an_interaction_and_its_failed_reply_in_the_admin(page: Page, live_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    User.objects.create_superuser(username="root", email="root@example.com", password=PASSWORD)
    interaction = InteractionFactory(title="Trip to Lisbon")
    MessageFactory(interaction=interaction, role=MessageRole.USER, content="Plan three days in Lisbon")
    MessageFactory(
        interaction=interaction,
        role=MessageRole.ASSISTANT,
        content="",
        status=MessageStatus.FAILED,
        error_code="upstream_timeout",
    )

    admin_log_in(page, live_server, "root", PASSWORD)
    expect(page.get_by_role("link", name="Log out").or_(page.get_by_role("button", name="Log out"))).to_be_visible()

    page.locator("tr.model-interaction").get_by_role("link", name="Interactions").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Select interaction to change")
    page.get_by_role("link", name="Trip to Lisbon").click()

    expect(page.get_by_role("heading", level=2, name="Trip to Lisbon")).to_be_visible()
    messages = page.locator("#transcript")
    user_row = messages.locator("tr", has_text="Plan three days in Lisbon")
    expect(user_row.locator("td.transcript-role")).to_have_text("user")
    failed_row = messages.locator("tr", has_text="upstream_timeout")
    expect(failed_row.locator("td.transcript-role")).to_have_text("assistant")
    expect(failed_row.locator("td.transcript-status")).to_have_text("failed")

    screenshot = tmp_path / "interaction.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 0


def test_a_user_who_is_not_staff_cannot_log_in_to_the_admin(page: Page, live_server) -> None:  # type: ignore[no-untyped-def]
    UserFactory(username="bob")

    admin_log_in(page, live_server, "bob", PASSWORD)

    expect(page.locator(".errornote")).to_contain_text("Please enter the correct username and password")
    expect(page).to_have_url(f"{live_server.url}/admin/login/")
