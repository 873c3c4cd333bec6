from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.servers import Daphne


@pytest.fixture
def daphne_factory(tmp_path: Path) -> Iterator[Callable[..., Daphne]]:
    """Start real daphne processes; all are stopped at the end of the test."""
    started: list[Daphne] = []

    def start(app: str = "demo_project.asgi:application", **env: str) -> Daphne:
        server = Daphne(app=app, env=env).start(tmp_path)
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
