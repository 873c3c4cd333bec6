from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.servers import Daphne


@pytest.fixture
def daphne_factory(tmp_path: Path) -> Iterator[Callable[..., Daphne]]:
    """Start real daphne processes; all are stopped at the end of the test."""
    started: list[Daphne] = []

    def start(app: str = "demo_project.asgi:application", args: tuple[str, ...] = (), **env: str) -> Daphne:
        server = Daphne(app=app, env=env, args=args).start(tmp_path)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(autouse=True)
def _fresh_wsguard_state() -> Iterator[None]:
    from wsguard import conf

    conf.reset()
    yield
    conf.reset()


@pytest.fixture(autouse=True)
async def _stop_control_listener() -> AsyncIterator[None]:
    """Each test's event loop gets its own control listener; stop it with the loop."""
    yield
    from wsguard.live import listener

    await listener.stop()


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except Exception:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A real Redis for the several-worker tests: ``REDIS_TEST_URL`` (default db 0 on 127.0.0.1).
    Skips with a reason when none answers, unless ``WSGUARD_REQUIRE_REDIS=1`` (set by .ci/run),
    which turns that into a failure."""
    import os

    url = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/0")
    if _redis_answers(url):
        return url
    if os.environ.get("WSGUARD_REQUIRE_REDIS") == "1":
        pytest.fail(f"WSGUARD_REQUIRE_REDIS=1 but no Redis answers at {url}")
    pytest.skip(f"no Redis answers at {url} (set REDIS_TEST_URL, or WSGUARD_REQUIRE_REDIS=1 to require it)")


@pytest.fixture
def migrated_database_url(tmp_path: Path) -> str:
    """A migrated SQLite file that daphne subprocesses (and management-command subprocesses) can
    share with each other; pytest-django's own test database is invisible to them."""
    import os
    import subprocess
    import sys

    from tests.servers import ROOT

    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True, timeout=120
    )
    return url


@pytest.fixture
def announcements() -> Iterator[list[dict]]:
    """The policy-changed control events this process dispatches while the test runs."""
    from wsguard import live, sync

    seen: list[dict] = []

    async def record(event: dict) -> None:
        seen.append(event)

    live.on_event(sync.EVENT_POLICY_CHANGED)(record)
    yield seen
    live._event_handlers[sync.EVENT_POLICY_CHANGED].remove(record)


@pytest.fixture
def alice(db):
    """A user; password ``pw-alice-123``."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
def bob(db):
    """A user; password ``pw-bob-123``."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("bob", password="pw-bob-123")
