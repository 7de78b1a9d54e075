"""The web interface in a real browser (Debian's Chromium driven by Playwright), against
the real pipeline: log in, create a listener, save a Person, watch the attempt appear
in the delivery log, rotate the secret, delete the listener. Screenshots go to
``artifacts/web-ui/``."""

from __future__ import annotations

import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import standardwebhooks
from django.contrib.auth.models import User
from django.db import connections
from playwright.sync_api import Browser, Page, expect, sync_playwright

from producer.conf import get_settings
from producer.log import AttemptLog
from tests.conftest import CI, wait_for
from tests.integration.conftest import Pipeline
from tests.receiver import Receiver
from tests.testapp.models import Person

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "web-ui"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):
        if CI:
            pytest.fail(f"{CHROMIUM} is missing (make setup installs it)", pytrace=False)
        pytest.skip(f"{CHROMIUM} is missing (make setup installs it)")
    # Playwright's sync API keeps an event loop in this thread; Django's ORM (called
    # synchronously by the test and the live server) must not take that for async code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, live_server: object) -> Iterator[Page]:
    context = browser.new_context(base_url=str(live_server))
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture
def delivery_log(pipeline: Pipeline) -> Iterator[None]:
    """``manage.py durian_log``, in a thread so that it writes to the test database."""
    log = AttemptLog(get_settings())

    def run() -> None:
        try:
            log.run()
        finally:
            connections.close_all()  # this thread's connection, or the test database stays in use

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    log.stop()
    thread.join(10)


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page: Page, username: str) -> None:
    page.goto("/webhooks/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw-for-tests")
    page.get_by_role("button", name="Log in").click()


def test_create_a_listener_watch_a_delivery_rotate_and_delete(
    page: Page, pipeline: Pipeline, receiver: Receiver, delivery_log: None
) -> None:
    User.objects.create_superuser("ada", "ada@example.com", "pw-for-tests")
    tok = uuid.uuid4().hex[:8]
    log_in(page, "ada")
    expect(page.get_by_role("heading", name="Events")).to_be_visible()
    shot(page, "1-events")

    page.get_by_role("row", name=re.compile(r"^person\s")).get_by_role(
        "link", name="New listener"
    ).click()
    page.get_by_label("Callback URL").fill(receiver.url(f"/{tok}/ui"))
    page.get_by_label("name condition", exact=True).select_option("startswith")
    page.get_by_label("name value", exact=True).fill(f"J{tok}")
    page.get_by_label("Sample payload (JSON) for the test").fill(f'{{"name": "J{tok}-x"}}')
    page.get_by_role("button", name="Test against the sample").click()
    expect(page.locator("#test-result")).to_contain_text("The sample matches")
    shot(page, "2-tested")
    page.get_by_role("button", name="Create listener").click()
    secret = page.locator("#secret").inner_text()
    assert secret.startswith("whsec_")
    shot(page, "3-created")
    listener_id = page.url.rstrip("/").rsplit("/", 1)[-1]

    # A new listener is live once the stream processor has read it: save until it delivers.
    def delivered() -> bool:
        Person.objects.create(name=f"J{tok}-{uuid.uuid4().hex[:4]}")
        return bool(receiver.to(f"/{tok}/ui"))

    wait_for(delivered, 90, interval=2, what="a delivery to the new listener")
    first = receiver.to(f"/{tok}/ui")[0]
    standardwebhooks.Webhook(secret).verify(first.body, first.headers)

    def attempt_shown() -> bool:
        page.reload()
        return page.locator("#attempts tbody tr", has_text="delivered").count() > 0

    wait_for(attempt_shown, 60, interval=1, what="the attempt in the delivery log")
    shot(page, "4-delivery-log")
    page.reload()
    assert secret not in page.content()  # shown once, never again

    page.get_by_role("button", name="Rotate secret").click()
    new_secret = page.locator("#secret").inner_text()
    assert new_secret.startswith("whsec_") and new_secret != secret
    expect(page.locator(".messages")).to_contain_text("The previous one also signs until")
    shot(page, "5-rotated")

    page.get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete").click()
    expect(page.locator(".messages")).to_contain_text(f"Listener {listener_id} deleted.")
    expect(page.get_by_role("link", name=listener_id)).to_have_count(0)
    shot(page, "6-deleted")
