"""Revocation across workers, for real: two daphne processes sharing one Redis (channel layer and
cache) and one database. Logging out, changing the password, deactivating the user or revoking the
token - over HTTP on one worker, or from a third process - closes the socket held open by the
other worker with 4401 within 2 seconds."""

from __future__ import annotations

import json
import re
import time

import pytest
import websockets.sync.client
from websockets.exceptions import ConnectionClosed

from tests.servers import Daphne
from tests.test_auth_daphne import APP, SETTINGS, Browser, create_users, manage

pytestmark = [pytest.mark.daphne, pytest.mark.redis]
# The promise. Measured from the moment the revoking request or command has returned.
REVOCATION_SECONDS = 2.0
_workers: list = []


def OTHER_LOGS() -> str:
    return "\n----\n".join(w.log()[-3000:] for w in _workers)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, redis_url):
    import os
    import subprocess
    import sys

    from tests.servers import ROOT

    tmp = tmp_path_factory.mktemp("revocation")
    overrides = {"ALLOWED_ORIGINS": ["http://127.0.0.1:*"]}
    env = {
        "DATABASE_URL": f"sqlite:///{tmp / 'shared.sqlite3'}",
        "REDIS_URL": redis_url,
        "WSGUARD_TEST_OVERRIDES": json.dumps(overrides),
    }
    full = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": SETTINGS, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=full, check=True, timeout=120
    )
    create_users(env, *[f"user{n}" for n in range(6)])
    workers = [Daphne(app=APP, env={**env, "DJANGO_SETTINGS_MODULE": SETTINGS}).start(tmp) for _ in range(2)]
    _workers[:] = workers
    yield workers, env
    for worker in workers:
        worker.stop()


def open_socket(server: Daphne, origin: str, **kwargs):
    url = f"ws://127.0.0.1:{server.port}/ws/echo/"
    ws = websockets.sync.client.connect(url, origin=origin, open_timeout=10, **kwargs).__enter__()
    hello = json.loads(ws.recv(timeout=10))
    return ws, hello


def closed_within(ws, seconds: float) -> tuple[int | None, str | None, float]:
    """Wait (bounded) for the server to close ``ws``; its close code, reason and the time it took."""
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            ws.recv(timeout=max(0.01, seconds - (time.monotonic() - started)))
    except ConnectionClosed as exc:
        took = time.monotonic() - started
        return (exc.rcvd.code, exc.rcvd.reason, took) if exc.rcvd is not None else (None, None, took)
    except TimeoutError:
        pass
    return None, None, time.monotonic() - started


def assert_closed(ws, reason: str, worker: Daphne) -> None:
    code, _, took = closed_within(ws, REVOCATION_SECONDS)
    assert code == 4401, f"not closed within {REVOCATION_SECONDS}s:\n{OTHER_LOGS()}"
    # daphne does not forward a close reason to the client; the worker's log names it.
    assert f"reason={reason} close=4401" in worker.log()
    print(f"\n{reason}: socket on the other worker closed {took:.3f}s after the change returned")


def test_logout_on_one_worker_closes_the_sessions_sockets_on_the_other(cluster):
    (a, b), _ = cluster
    browser = Browser(a).login("user0")
    by_cookie, hello = open_socket(b, browser.base, additional_headers={"Cookie": browser.cookie_header()})
    assert hello["user"] == "user0"
    by_ticket, hello = open_socket(b, browser.base, subprotocols=["wsguard", f"wsguard.ticket.{browser.ticket()}"])
    assert hello["user"] == "user0"
    other = Browser(a).login("user0")
    untouched, _ = open_socket(b, other.base, additional_headers={"Cookie": other.cookie_header()})
    status, _ = browser.post("/accounts/logout/")
    assert status == 200
    assert_closed(by_cookie, "logged-out", b)
    assert_closed(by_ticket, "logged-out", b)
    code, _, _ = closed_within(untouched, 0.5)
    assert code is None, "another session of the same user must stay open"
    untouched.close()


def test_a_password_change_on_one_worker_closes_the_users_sockets_on_the_other(cluster):
    (a, b), _ = cluster
    browser = Browser(a).login("user1")
    ws, _ = open_socket(b, browser.base, additional_headers={"Cookie": browser.cookie_header()})
    status, page = browser.request("/accounts/password_change/")
    assert status == 200
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
    status, _ = browser.post(
        "/accounts/password_change/",
        {
            "old_password": "pw-user1-123",
            "new_password1": "a-brand-new-secret-1",
            "new_password2": "a-brand-new-secret-1",
            "csrfmiddlewaretoken": token,
        },
    )
    assert status == 200
    assert_closed(ws, "password-changed", b)


def test_deactivating_the_user_from_a_third_process_closes_sockets_on_both_workers(cluster):
    (a, b), env = cluster
    browser = Browser(a).login("user2")
    on_a, _ = open_socket(a, browser.base, additional_headers={"Cookie": browser.cookie_header()})
    on_b, _ = open_socket(b, browser.base, additional_headers={"Cookie": browser.cookie_header()})
    manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model\n"
        "u = get_user_model().objects.get(username='user2'); u.is_active = False; u.save()",
    )
    assert_closed(on_a, "user-inactive", a)
    assert_closed(on_b, "user-inactive", b)


def test_revoking_a_token_with_the_command_closes_its_socket(cluster):
    (_, b), env = cluster
    token = manage(env, "wsguard_token", "create", "user3", "--name", "bot").strip()
    ws, hello = open_socket(
        b, f"http://127.0.0.1:{b.port}", subprotocols=["wsguard", f"wsguard.bearer.{token}"]
    )
    assert hello["user"] == "user3"
    manage(env, "wsguard_token", "revoke", token.split("_")[1])
    assert_closed(ws, "token-revoked", b)
