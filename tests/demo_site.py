"""The demo as ``manage.py demo`` serves it, for tests: its own file database (set up by
``manage.py demo --no-serve``), the chat under real daphne, the attacker's page on another port,
and optionally the unguarded control app (tests/control_app.py) on a third."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import ROOT, Daphne, free_port

DEMO_PASSWORD = "demo-password-for-tests"


@dataclass
class DemoSite:
    """The demo as ``manage.py demo`` serves it, on free ports, with its own database."""

    var_dir: Path
    env: dict[str, str]
    chat: Daphne
    hostile: Daphne
    control: Daphne | None = None
    # Further chat processes (``workers`` > 1), sharing the database and the channel layer.
    workers: list[Daphne] = field(default_factory=list)
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
    workers: int = 1,
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
        site.manage("wsguard_origins", "add", origin, "--note", "added by the test")
    try:
        site.chat = Daphne(app="demo_project.asgi:application", env=site_env, port=chat_port).start(tmp_dir)
        site.servers.append(site.chat)
        site.workers.append(site.chat)
        for _ in range(workers - 1):
            worker = Daphne(app="demo_project.asgi:application", env=site_env).start(tmp_dir)
            site.servers.append(worker)
            site.workers.append(worker)
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
