"""wsguard.testing: one line gives a consumer test the Origin, session cookie, ticket or token of a
user, arriving through the whole stack exactly as a real client would."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from wsguard import GuardStack
from wsguard.testing import build_communicator, communicator, login_session

pytestmark = pytest.mark.django_db(transaction=True)


class Who(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        user = self.scope["user"]
        await self.send_json(
            {
                "user": user.get_username() if user.is_authenticated else None,
                **{k: self.scope["wsguard"].get(k) for k in ("credential", "origin", "token_id")},
            }
        )


app = GuardStack(Who.as_asgi())


@pytest.mark.parametrize("via", ["session", "ticket", "token", "bearer-header"])
async def test_one_line_per_credential(alice, via):
    comm = await communicator(app, "/ws/", user=alice, via=via)
    assert (await comm.connect())[0]
    hello = await comm.receive_json_from()
    assert hello["user"] == "alice"
    assert hello["origin"] == "http://testserver"
    assert hello["credential"] == {"bearer-header": "token"}.get(via, via)
    assert hello["token_id"] == comm.token_id
    await comm.disconnect()


async def test_the_credentials_are_real_ones(alice):
    comm = await communicator(app, "/ws/", user=alice, via="ticket")
    cookie = dict(comm.scope["headers"])[b"cookie"].decode()
    assert cookie == f"{settings.SESSION_COOKIE_NAME}={comm.session_key}"
    assert comm.scope["subprotocols"] == ["wsguard", f"wsguard.ticket.{comm.ticket}"]
    assert comm.token is None


async def test_origin_and_secure_can_be_chosen(alice):
    comm = await communicator(app, "/ws/", user=alice, origin="https://app.example.com", secure=True)
    assert comm.scope["scheme"] == "wss"
    assert (await comm.connect())[0]
    assert (await comm.receive_json_from())["origin"] == "https://app.example.com"
    await comm.disconnect()


async def test_a_foreign_origin_is_refused_as_in_production(alice):
    comm = await communicator(app, "/ws/", user=alice, origin="https://evil.example")
    assert await comm.connect() == (False, 4403)


async def test_no_user_is_an_anonymous_client(alice):
    comm = await communicator(app, "/ws/")
    assert await comm.connect() == (False, 4401)


def test_login_session_is_what_django_login_makes(alice):
    from importlib import import_module

    from django.contrib.auth import SESSION_KEY

    store = login_session(alice)
    loaded = import_module(settings.SESSION_ENGINE).SessionStore(store.session_key)
    assert loaded[SESSION_KEY] == str(alice.pk)


def test_the_synchronous_builder(alice):
    comm = build_communicator(app, "/ws/x/", user=alice, via="token")
    assert comm.scope["path"] == "/ws/x/" and comm.token.startswith("wsg_")


async def test_the_helper_itself_runs_its_database_work_off_the_loop(alice):
    # The async helper must be usable from async tests, where synchronous ORM calls raise.
    with pytest.raises(Exception, match="async context"):
        build_communicator(app, "/ws/", user=alice)
    assert await database_sync_to_async(lambda: True)()
