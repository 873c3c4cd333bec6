"""The authentication step through the whole GuardStack, with real cookie headers, tickets and
tokens (WebsocketCommunicator; the database and cache are real, in-process)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from django.test import Client, override_settings
from django.urls import path

from wsguard import GuardStack, guard
from wsguard.testing import build_communicator, communicator

pytestmark = pytest.mark.django_db(transaction=True)


class WhoAmI(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept(subprotocol=self.scope["subprotocols"][0] if self.scope["subprotocols"] else None)
        info = self.scope["wsguard"]
        user = self.scope["user"]
        await self.send(
            text_data="|".join(
                [
                    user.get_username() if user.is_authenticated else "-",
                    str(info.get("credential")),
                    ",".join(self.scope["subprotocols"]),
                    self.scope.get("query_string", b"").decode(),
                ]
            )
        )


application = GuardStack(
    URLRouter(
        [
            path("ws/open/", guard(WhoAmI.as_asgi(), allow_anonymous=True)),
            path("ws/tickets-only/", guard(WhoAmI.as_asgi(), authenticators=["ticket"])),
            path("ws/partner/", guard(WhoAmI.as_asgi(), origins=["https://*.partner.example"])),
            path("ws/private/", WhoAmI.as_asgi()),
            path("ws/private-admin/", WhoAmI.as_asgi()),
        ]
    )
)


async def hello(comm) -> str:
    return await comm.receive_from(timeout=5)


def session_cookie_for(user) -> bytes:
    """The session cookie Django's own login view sets, taken from a real login."""
    client = Client()
    assert client.login(username=user.get_username(), password=f"pw-{user.get_username()}-123")
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def raw_communicator(route: str, *headers: tuple[bytes, bytes], subprotocols=None):
    from channels.testing import WebsocketCommunicator

    base = [(b"host", b"testserver"), (b"origin", b"http://testserver")]
    return WebsocketCommunicator(application, route, headers=[*base, *headers], subprotocols=subprotocols)


async def test_session_cookie_from_a_real_login_authenticates(alice):
    cookie = await database_sync_to_async(session_cookie_for)(alice)
    comm = raw_communicator("/ws/private/", (b"cookie", cookie))
    assert (await comm.connect())[0]
    assert (await hello(comm)).startswith("alice|session|")
    await comm.disconnect()


async def test_no_credential_is_refused_with_auth_required(caplog):
    comm = raw_communicator("/ws/private/")
    connected, code = await comm.connect()
    assert (connected, code) == (False, 4401)
    assert "reason=auth-required" in caplog.text


async def test_a_route_may_allow_anonymous_clients():
    comm = raw_communicator("/ws/open/")
    assert (await comm.connect())[0]
    assert (await hello(comm)).startswith("-|None|")
    await comm.disconnect()


async def test_an_anonymous_session_cookie_is_no_credential():
    comm = raw_communicator("/ws/private/", (b"cookie", b"sessionid=doesnotexist0123456789abcdef"))
    assert await comm.connect() == (False, 4401)


@pytest.mark.parametrize("via", ["session", "ticket", "token", "bearer-header"])
async def test_every_credential_names_the_user_and_how(alice, via):
    comm = await communicator(application, "/ws/private/", user=alice, via=via)
    connected, subprotocol = await comm.connect()
    assert connected
    expected = {"bearer-header": "token"}.get(via, via)
    user, credential, protocols, _ = (await hello(comm)).split("|")
    assert (user, credential) == ("alice", expected)
    # The credential never reaches the application, and is never echoed.
    assert "wsguard." not in protocols
    # Echoed only when the client offered it (beside a credential); never one it did not offer.
    assert subprotocol == ("wsguard" if via in ("ticket", "token") else None)
    await comm.disconnect()


async def test_the_echo_is_the_plain_protocol_even_when_the_app_picks_nothing(alice):
    class Silent(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            await self.accept()

    app = GuardStack(Silent.as_asgi())
    comm = await communicator(app, "/ws/", user=alice, via="ticket")
    assert await comm.connect() == (True, "wsguard")
    await comm.disconnect()


async def test_a_credential_protocol_without_the_plain_one_is_refused(alice):
    comm = await communicator(application, "/ws/private/", user=alice, via="ticket")
    comm.scope["subprotocols"] = [p for p in comm.scope["subprotocols"] if p != "wsguard"]
    assert await comm.connect() == (False, 4401)


async def test_a_ticket_is_redeemed_once(alice, caplog):
    comm = await communicator(application, "/ws/private/", user=alice, via="ticket")
    assert (await comm.connect())[0]
    await comm.disconnect()
    again = raw_communicator("/ws/private/", subprotocols=["wsguard", "wsguard.ticket." + comm.ticket])
    assert await again.connect() == (False, 4401)
    assert "reason=ticket-reused" in caplog.text
    assert comm.ticket not in caplog.text


async def test_a_ticket_in_the_query_string_works_and_is_hidden(alice, caplog):
    made = await communicator(application, "/ws/private/", user=alice, via="ticket")
    comm = raw_communicator("/ws/private/")
    comm.scope["query_string"] = f"room=1&ticket={made.ticket}".encode()
    assert (await comm.connect())[0]
    assert (await hello(comm)) == "alice|ticket||room=1"
    await comm.disconnect()
    reuse = raw_communicator("/ws/private/")
    reuse.scope["query_string"] = f"ticket={made.ticket}".encode()
    assert not (await reuse.connect())[0]
    assert made.ticket not in caplog.text


async def test_a_ticket_from_another_origin_is_refused(alice, caplog):
    comm = await communicator(application, "/ws/private/", user=alice, via="ticket", origin="https://app.example.com")
    comm.scope["headers"] = [(n, b"http://testserver" if n == b"origin" else v) for n, v in comm.scope["headers"]]
    assert await comm.connect() == (False, 4401)
    assert "reason=ticket-origin" in caplog.text


async def test_a_ticket_with_another_users_session_cookie_is_refused(alice, bob, caplog):
    comm = await communicator(application, "/ws/private/", user=alice, via="ticket")
    bobs = await database_sync_to_async(session_cookie_for)(bob)
    comm.scope["headers"] = [(n, bobs if n == b"cookie" else v) for n, v in comm.scope["headers"]]
    assert await comm.connect() == (False, 4401)
    assert "reason=ticket-user" in caplog.text


async def test_an_expired_ticket_is_refused(alice, caplog):
    with override_settings(WSGUARD={"TICKET_TTL": 1, "ALLOWED_ORIGINS": []}):
        comm = await communicator(application, "/ws/private/", user=alice, via="ticket")
        import asyncio

        await asyncio.sleep(1.2)
        assert await comm.connect() == (False, 4401)
    assert "reason=ticket-expired" in caplog.text


async def test_a_bad_token_with_a_valid_session_cookie_is_still_refused(alice, caplog):
    cookie = await database_sync_to_async(session_cookie_for)(alice)
    comm = raw_communicator(
        "/ws/private/", (b"cookie", cookie), subprotocols=["wsguard", "wsguard.bearer.wsg_0123abcd_notthesecret"]
    )
    assert await comm.connect() == (False, 4401)
    assert "reason=auth-invalid" in caplog.text


async def test_a_ticket_and_a_token_at_once_are_ambiguous(alice, caplog):
    comm = await communicator(application, "/ws/private/", user=alice, via="ticket")
    tokened = await communicator(application, "/ws/private/", user=alice, via="bearer-header")
    comm.scope["headers"].append((b"authorization", f"Bearer {tokened.token}".encode()))
    assert await comm.connect() == (False, 4401)
    assert "reason=auth-ambiguous" in caplog.text


async def test_a_route_may_require_a_ticket(alice, caplog):
    comm = await communicator(application, "/ws/tickets-only/", user=alice, via="session")
    assert await comm.connect() == (False, 4401)
    assert "reason=auth-not-allowed" in caplog.text
    ticketed = await communicator(application, "/ws/tickets-only/", user=alice, via="ticket")
    assert (await ticketed.connect())[0]
    await ticketed.disconnect()


async def test_a_route_may_trust_fewer_origins(alice):
    comm = await communicator(application, "/ws/partner/", user=alice, via="token")
    assert await comm.connect() == (False, 4403)
    partner = await communicator(application, "/ws/partner/", user=alice, via="token", origin="https://a.partner.example")
    assert (await partner.connect())[0]
    await partner.disconnect()


async def test_an_inactive_users_session_is_refused(alice, caplog):
    comm = await communicator(application, "/ws/private/", user=alice)
    alice.is_active = False
    await database_sync_to_async(alice.save)()
    assert await comm.connect() == (False, 4401)
    assert "reason=user-inactive" in caplog.text


async def test_a_password_change_voids_the_session_and_its_tickets(alice, caplog):
    session = await communicator(application, "/ws/private/", user=alice)
    ticket = await communicator(application, "/ws/private/", user=alice, via="ticket")
    alice.set_password("another-password-1")
    await database_sync_to_async(alice.save)()
    assert await session.connect() == (False, 4401)
    assert await ticket.connect() == (False, 4401)
    assert caplog.text.count("reason=auth-invalid") == 2


def test_guard_without_the_stack_is_an_actionable_error():
    import asyncio

    app = guard(WhoAmI.as_asgi(), allow_anonymous=True)
    comm = build_communicator(app, "/ws/")
    with pytest.raises(ValueError, match="GuardStack"):
        asyncio.run(comm.connect())


def test_guard_may_not_widen_the_authenticators():
    with pytest.raises(ValueError, match="never widen"):
        guard(WhoAmI.as_asgi(), authenticators=["magic-link"])


@pytest.mark.parametrize(("route", "accepted"), [("/ws/private/", True), ("/ws/private-admin/", False)])
async def test_a_tickets_path_scope_ends_at_a_segment_boundary(alice, caplog, route, accepted):
    from wsguard.auth import tickets

    session = await database_sync_to_async(session_cookie_for)(alice)
    ticket, _ = await database_sync_to_async(tickets.mint)(
        alice, origin="http://testserver", session_key=None, path_prefix="/ws/private"
    )
    comm = raw_communicator(route, (b"cookie", session), subprotocols=["wsguard", "wsguard.ticket." + ticket])
    connected, _ = await comm.connect()
    assert connected is accepted
    if accepted:
        await comm.disconnect()
    else:
        assert "reason=ticket-path" in caplog.text


async def test_report_only_keeps_credentials_hidden_when_authentication_fails(alice, monkeypatch):
    from wsguard import middleware

    made = await communicator(application, "/ws/private/", user=alice, via="token")

    def outage(*args, **kwargs):
        raise OSError("the cache is away")

    monkeypatch.setattr(middleware, "_authenticate", outage)
    with override_settings(WSGUARD={"REPORT_ONLY": True}):
        connected, subprotocol = await made.connect()
        assert connected
        user, credential, protocols, _ = (await hello(made)).split("|")
    assert (user, credential, protocols) == ("-", "None", "wsguard")
    assert subprotocol == "wsguard"
    await made.disconnect()
