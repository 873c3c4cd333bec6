"""Browser fixtures: the system's Chromium driven by Playwright's sync API, and the demo served by
real daphne processes (the chat, the attacker's page on another port, and the unguarded control).

Chromium is the distribution's package (``/usr/bin/chromium``, or ``WSGUARD_CHROMIUM``); Playwright's
own browser download is not used. Without Chromium these tests skip with a reason, unless
``WSGUARD_REQUIRE_BROWSER=1`` (set by .ci/run), which makes a missing Chromium a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.demo_site import DemoSite, start_demo

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests save their screenshots: ``WSGUARD_SCREENSHOTS_DIR`` when set (the README's
    pictures are made with ``WSGUARD_SCREENSHOTS_DIR=docs/screenshots``), a temporary directory otherwise."""
    configured = os.environ.get("WSGUARD_SCREENSHOTS_DIR")
    path = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # Playwright's sync API keeps its event loop registered as this thread's running loop for as
    # long as the browser is open, and no other loop can run meanwhile: the browser tests go last.
    browser = [item for item in items if item.get_closest_marker("browser") is not None]
    if browser:
        others = [item for item in items if item.get_closest_marker("browser") is None]
        items[:] = others + browser


@pytest.fixture(autouse=True)
def _stop_control_listener() -> None:
    """Replaces the suite's async autouse fixture of this name for the browser tests: they start no
    control listener in this process, and no second event loop may run beside Playwright's."""


def chromium_path() -> str | None:
    configured = os.environ.get("WSGUARD_CHROMIUM")
    candidates = [configured] if configured else [shutil.which("chromium"), "/usr/bin/chromium"]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """A headless Chromium (a Playwright ``Browser``) for the whole session."""
    path = chromium_path()
    if path is None:
        if os.environ.get("WSGUARD_REQUIRE_BROWSER") == "1":
            pytest.fail("WSGUARD_REQUIRE_BROWSER=1 but no Chromium at /usr/bin/chromium (apt-get install chromium)")
        pytest.skip("no Chromium found (install the distribution's chromium, or set WSGUARD_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    """The demo with its default settings (same-origin trust), plus the unguarded control app."""
    site = start_demo(tmp_path_factory.mktemp("demo"))
    yield site
    site.stop()
