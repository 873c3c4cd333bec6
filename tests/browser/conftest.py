"""Browser fixtures: the system's Chromium driven by Playwright's sync API, and the demo served by
real daphne processes (the chat, the attacker's page on another port, and the unguarded control).

Chromium is the distribution's package (``/usr/bin/chromium``, or ``WSGUARD_CHROMIUM``); Playwright's
own browser download is not used. Without Chromium these tests skip with a reason, unless
``WSGUARD_REQUIRE_BROWSER=1`` (set by .ci/run), which makes a missing Chromium a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import ROOT, Daphne, free_port

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEMO_PASSWORD = "demo-password-for-tests"


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


@dataclass
class DemoSite:
    """The demo as ``manage.py demo`` serves it, on free ports, with its own database."""

    var_dir: Path
    env: dict[str, str]
    chat: Daphne
    hostile: Daphne
    control: Daphne | None = None
    servers: list[Daphne] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.chat.base}"

    @property
    def origin(self) -> str:
        return self.url

    def socket_url(self, server: Daphne | None = None, room: str = "lobby") -> str:
        return f"ws://{(server or self.chat).base}/ws/chat/{room}/"

    def hostile_url(self, target: str) -> str:
        from urllib.parse import quote

        return f"http://{self.hostile.base}/?target={quote(target, safe='')}"

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def start_demo(
    tmp_dir: Path,
    *,
    control: bool = True,
    chat_port: int | None = None,
    trusted_origins: tuple[str, ...] = (),
    **extra_env: str,
) -> DemoSite:
    """Set up the demo database with ``manage.py demo --no-serve`` (plus ``trusted_origins`` as
    TrustedOrigin rows, as an admin would add them) and start the servers."""
    var_dir = tmp_dir / "var"
    var_dir.mkdir(parents=True, exist_ok=True)
    chat_port = chat_port or free_port()
    hostile_port = free_port()
    site_env = {
        "DJANGO_SETTINGS_MODULE": "demo_project.settings",
        "DEMO_VAR_DIR": str(var_dir),
        "DEMO_PASSWORD": DEMO_PASSWORD,
        "DJANGO_SECRET_KEY": "browser-tests-not-secret",
        # A file database that every process of the site shares; the in-memory channel layer.
        "DATABASE_URL": f"sqlite:///{var_dir / 'db.sqlite3'}",
        "REDIS_URL": "",
        "DEMO_HOSTILE_URL": f"http://127.0.0.1:{hostile_port}/",
        **extra_env,
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT), **site_env}
    site = DemoSite(var_dir=var_dir, env=env, chat=Daphne(), hostile=Daphne())
    site.manage("demo", "--no-serve")
    for origin in trusted_origins:
        site.manage(
            "shell",
            "-c",
            f"from wsguard.models import TrustedOrigin; TrustedOrigin.objects.create(origin={origin!r}, note='test')",
        )
    try:
        site.chat = Daphne(app="demo_project.asgi:application", env=site_env, port=chat_port).start(tmp_dir)
        site.servers.append(site.chat)
        site.hostile = Daphne(
            app="demo_project.hostile:application",
            env={**site_env, "DEMO_HOSTILE_TARGET": f"ws://127.0.0.1:{chat_port}/ws/chat/lobby/"},
            port=hostile_port,
        ).start(tmp_dir)
        site.servers.append(site.hostile)
        if control:
            site.control = Daphne(app="tests.control_app:application", env=site_env).start(tmp_dir)
            site.servers.append(site.control)
    except Exception:
        site.stop()
        raise
    return site


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    """The demo with its default settings (same-origin trust), plus the unguarded control app."""
    site = start_demo(tmp_path_factory.mktemp("demo"))
    yield site
    site.stop()
