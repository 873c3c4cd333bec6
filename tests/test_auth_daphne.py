"""The authentication step under real daphne processes with real clients: a ticket minted by a
real CSRF-protected POST (session cookie from a real login) and redeemed over the socket; reuse,
expiry, wrong origin, wrong user and fifty concurrent redemptions across two workers sharing Redis
refused except one; the subprotocol echo; a bad token beside a valid session cookie."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import websockets.sync.client
from websockets.exceptions import InvalidStatus

from tests.servers import ROOT, Daphne, HttpClient, raw_handshake

pytestmark = pytest.mark.daphne
SETTINGS = "tests.auth_settings"
APP = "demo_project.asgi:application"


def manage(env: dict[str, str], *args: str) -> str:
    full = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": SETTINGS, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def create_users(env: dict[str, str], *names: str) -> None:
    code = "from django.contrib.auth import get_user_model\n" + "".join(
        f"get_user_model().objects.create_user({n!r}, password='pw-{n}-123')\n" for n in names
    )
    manage(env, "shell", "-c", code)


class Browser(HttpClient):
    """Cookies, CSRF token and Origin as a browser page on the server's own origin sends them."""

    def __init__(self, server: Daphne) -> None:
        super().__init__(f"http://127.0.0.1:{server.port}")

    def login(self, username: str) -> Browser:
        self.sign_in(username, f"pw-{username}-123")
        return self

    def ticket(self, origin: str | None = "self") -> str:
        status, body = self.post("/wsguard/ticket/", origin=origin)
        assert status == 200, body
        return json.loads(body)["ticket"]

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


@pytest.fixture(scope="module")
def site(tmp_path_factory, redis_url):
    """Two daphne workers sharing one SQLite file and one Redis (cache and channel layer)."""
    import subprocess as sp

    tmp = tmp_path_factory.mktemp("auth-daphne")
    url = f"sqlite:///{tmp / 'shared.sqlite3'}"
    # Both workers serve one site: each trusts the other's origin, as two workers behind one proxy would.
    overrides = {"TICKET_TTL": 3, "ALLOWED_ORIGINS": ["https://app.example.com", "http://127.0.0.1:*"]}
    env = {"DATABASE_URL": url, "REDIS_URL": redis_url, "WSGUARD_TEST_OVERRIDES": json.dumps(overrides)}
    full = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": SETTINGS, "PYTHONPATH": str(ROOT)}
    sp.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=full, check=True, timeout=120)
    create_users(env, "alice", "bob")
    workers = [Daphne(app=APP, env={**env, "DJANGO_SETTINGS_MODULE": SETTINGS}).start(tmp) for _ in range(2)]
    yield workers, env
    for worker in workers:
        worker.stop()


def ws_url(server: Daphne, path: str = "/ws/echo/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def hello(ws) -> dict:
    return json.loads(ws.recv(timeout=10))


def refused_status(server: Daphne, **kwargs) -> int:
    with pytest.raises(InvalidStatus) as caught:
        websockets.sync.client.connect(ws_url(server), open_timeout=10, **kwargs)
    return caught.value.response.status_code


def test_a_ticket_minted_over_http_is_redeemed_over_the_socket_and_echoed_as_wsguard(site):
    (a, _), _ = site
    browser = Browser(a).login("alice")
    ticket = browser.ticket()
    with websockets.sync.client.connect(
        ws_url(a), origin=browser.base, subprotocols=["wsguard", f"wsguard.ticket.{ticket}"], open_timeout=10
    ) as ws:
        assert ws.subprotocol == "wsguard"
        assert hello(ws)["user"] == "alice"


def test_the_raw_response_echoes_exactly_wsguard(site):
    (a, _), _ = site
    browser = Browser(a).login("alice")
    status, head = raw_handshake(
        a.port,
        headers=[("Origin", browser.base), ("Sec-WebSocket-Protocol", f"wsguard, wsguard.ticket.{browser.ticket()}")],
    )
    assert status == 101
    echoed = [line for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-protocol:")]
    assert echoed == [b"Sec-WebSocket-Protocol: wsguard"]


def test_a_ticket_minted_on_one_worker_is_redeemed_on_the_other_only_once(site):
    (a, b), _ = site
    browser = Browser(a).login("alice")
    ticket = browser.ticket()
    protocols = ["wsguard", f"wsguard.ticket.{ticket}"]
    with websockets.sync.client.connect(ws_url(b), origin=browser.base, subprotocols=protocols, open_timeout=10) as ws:
        assert hello(ws)["user"] == "alice"
    assert refused_status(a, origin=browser.base, subprotocols=protocols) == 403
    assert refused_status(b, origin=browser.base, subprotocols=protocols) == 403


def test_a_ticket_in_the_query_string(site):
    (a, _), _ = site
    browser = Browser(a).login("alice")
    url = ws_url(a, f"/ws/echo/?ticket={browser.ticket()}")
    with websockets.sync.client.connect(url, origin=browser.base, open_timeout=10) as ws:
        assert hello(ws)["user"] == "alice"


def test_an_expired_ticket_is_refused(site):
    (a, _), _ = site
    browser = Browser(a).login("alice")
    ticket = browser.ticket()
    time.sleep(3.5)  # TICKET_TTL is 3 in this cluster
    assert refused_status(a, origin=browser.base, subprotocols=["wsguard", f"wsguard.ticket.{ticket}"]) == 403
    assert "reason=ticket-expired" in a.log()


def test_a_ticket_from_another_trusted_origin_is_refused(site):
    (a, _), _ = site
    browser = Browser(a).login("alice")
    ticket = browser.ticket()
    # https://app.example.com is trusted by the stack, but the ticket was minted for the page's own origin.
    status = refused_status(a, origin="https://app.example.com", subprotocols=["wsguard", f"wsguard.ticket.{ticket}"])
    assert status == 403
    assert "reason=ticket-origin" in a.log()


def test_a_ticket_presented_with_another_users_cookie_is_refused(site):
    (a, _), _ = site
    alice, bob = Browser(a).login("alice"), Browser(a).login("bob")
    status = refused_status(
        a,
        origin=alice.base,
        subprotocols=["wsguard", f"wsguard.ticket.{alice.ticket()}"],
        additional_headers={"Cookie": bob.cookie_header()},
    )
    assert status == 403
    assert "reason=ticket-user" in a.log()


def test_fifty_concurrent_redemptions_across_two_workers_give_one_socket(site):
    (a, b), _ = site
    browser = Browser(a).login("alice")
    ticket = browser.ticket()
    barrier = threading.Barrier(50)

    def attempt(n: int) -> int:
        barrier.wait(timeout=60)
        server = (a, b)[n % 2]
        return raw_handshake(
            server.port,
            headers=[("Origin", browser.base), ("Sec-WebSocket-Protocol", f"wsguard, wsguard.ticket.{ticket}")],
            timeout=60,
        )[0]

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(attempt, range(50)))
    assert statuses.count(101) == 1
    assert statuses.count(403) == 49


def test_a_bad_token_with_a_valid_session_cookie_is_refused(site):
    (a, _), _ = site
    browser = Browser(a).login("alice")
    with websockets.sync.client.connect(
        ws_url(a), origin=browser.base, additional_headers={"Cookie": browser.cookie_header()}, open_timeout=10
    ) as ws:
        assert hello(ws)["user"] == "alice"
    status = refused_status(
        a,
        origin=browser.base,
        additional_headers={"Cookie": browser.cookie_header(), "Authorization": "Bearer wsg_0123abcd_" + "x" * 43},
    )
    assert status == 403
    assert "reason=auth-invalid" in a.log()


def test_a_token_from_the_command_line_authenticates_a_client_without_origin_only_if_allowed(site):
    (a, _), env = site
    token = manage(env, "wsguard_token", "create", "bob", "--name", "cli").strip()
    # MISSING_ORIGIN is "deny" here: no Origin is refused whatever the credential.
    assert refused_status(a, additional_headers={"Authorization": f"Bearer {token}"}) == 403
    protocols = ["wsguard", f"wsguard.bearer.{token}"]
    with websockets.sync.client.connect(
        ws_url(a), origin="https://app.example.com", subprotocols=protocols, open_timeout=10
    ) as ws:
        assert ws.subprotocol == "wsguard"
        assert hello(ws)["user"] == "bob"


def test_no_secret_reaches_the_server_log(site):
    (a, b), _ = site
    browser = Browser(a).login("alice")
    ticket = browser.ticket()
    raw_handshake(a.port, path=f"/ws/echo/?ticket={ticket}", headers=[("Origin", "https://evil.example")])
    raw_handshake(a.port, path=f"/ws/echo/?ticket={ticket}", headers=[("Origin", browser.base)])
    raw_handshake(a.port, path=f"/ws/echo/?ticket={ticket}", headers=[("Origin", browser.base)])
    log = a.log() + b.log()
    assert "reason=ticket-reused" in log
    assert ticket not in log
    assert browser.cookie("sessionid") not in log
