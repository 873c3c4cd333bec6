"""``manage.py chat_client``: a non-browser client with an API token and no Origin, against the
demo under real daphne (``MISSING_ORIGIN = "token"``)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import websockets.sync.client
from websockets.exceptions import InvalidStatus

from tests.demo_site import DemoSite, start_demo
from tests.servers import ROOT

pytestmark = pytest.mark.daphne


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    demo = start_demo(tmp_path_factory.mktemp("chat-client"), control=False)
    yield demo
    demo.stop()


def chat_client(site: DemoSite, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "chat_client", "lobby", "--url", f"ws://{site.chat.base}", *args],
        cwd=ROOT,
        env=site.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def new_token(site: DemoSite, username: str = "alice") -> str:
    return site.manage("wsguard_token", "create", username, "--name", "chat_client test").strip()


def test_a_token_without_origin_joins_and_its_messages_are_stored(site: DemoSite):
    token = new_token(site)
    first = chat_client(site, "--token", token, "--send", "from the command line")
    assert first.returncode == 0, first.stderr
    assert "Joined Lobby as alice" in first.stdout
    assert "Sent and stored (id " in first.stdout

    # The token may also come from the environment (kept out of the process list).
    again = subprocess.run(
        [sys.executable, "manage.py", "chat_client", "lobby", "--url", f"ws://{site.chat.base}", "--send", "again"],
        cwd=ROOT,
        env={**site.env, "DEMO_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert "alice: from the command line" in again.stdout
    assert token not in site.chat.log()


def test_no_token_or_a_bad_one_is_refused(site: DemoSite):
    missing = chat_client(site)
    assert missing.returncode != 0
    assert "API token is required" in missing.stderr
    bad = chat_client(site, "--token", "wsg_not-a-real-token")
    assert bad.returncode != 0
    assert "refused the handshake: HTTP 403" in bad.stderr


def test_a_revoked_token_is_refused(site: DemoSite):
    token = new_token(site, "bob")
    assert chat_client(site, "--token", token, "--send", "before").returncode == 0
    prefix = site.manage("wsguard_token", "list", "--user", "bob").split("\t", 1)[0].strip()
    site.manage("wsguard_token", "revoke", prefix)
    after = chat_client(site, "--token", token, "--send", "after")
    assert after.returncode != 0
    assert "HTTP 403" in after.stderr


def test_without_an_origin_a_session_cookie_is_not_enough(site: DemoSite):
    # What chat_client relies on: with no Origin only an API token may authenticate, so a stolen
    # cookie replayed from a script does not open the chat.
    import re
    import urllib.parse
    import urllib.request
    from http.cookiejar import CookieJar

    from tests.demo_site import DEMO_PASSWORD

    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = f"{site.url}/accounts/login/"
    page = opener.open(login).read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"username": "alice", "password": DEMO_PASSWORD, "csrfmiddlewaretoken": csrf})
    opener.open(urllib.request.Request(login, data=form.encode(), headers={"Referer": login}))
    cookies = "; ".join(f"{c.name}={c.value}" for c in jar)
    assert "sessionid=" in cookies
    with pytest.raises(InvalidStatus) as refused:
        websockets.sync.client.connect(site.socket_url(), additional_headers={"Cookie": cookies}, open_timeout=10)
    assert refused.value.response.status_code == 403
