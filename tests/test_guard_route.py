"""wsguard.guard(): one route narrows the stack's policy (anonymous readers, fewer credentials,
fewer origins) and never widens it; without GuardStack above it is a ValueError naming the fix."""

from __future__ import annotations

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from django.urls import path

import wsguard
from wsguard.middleware import HandshakeAuth, OriginGuard, RouteGuard
from wsguard.testing import communicator

pytestmark = pytest.mark.django_db(transaction=True)
connected_in_consumer: list[str] = []


class Recording(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        connected_in_consumer.append(self.scope["path"])
        await self.accept()


def stack(**route_policy):
    return wsguard.GuardStack(URLRouter([path("ws/", wsguard.guard(Recording.as_asgi(), **route_policy))]))


def test_guard_is_exported_lazily_from_the_package():
    assert wsguard.guard is wsguard.middleware.guard
    assert isinstance(wsguard.guard(Recording.as_asgi()), RouteGuard)


async def test_an_anonymous_client_is_refused_before_the_consumer_connects():
    connected_in_consumer.clear()
    app = wsguard.GuardStack(URLRouter([path("ws/", Recording.as_asgi())]))
    comm = await communicator(app, "/ws/")
    assert await comm.connect() == (False, 4401)
    assert connected_in_consumer == []


async def test_allow_anonymous_opens_one_route_only():
    app = wsguard.GuardStack(
        URLRouter(
            [
                path("ws/public/", wsguard.guard(Recording.as_asgi(), allow_anonymous=True)),
                path("ws/private/", Recording.as_asgi()),
            ]
        )
    )
    public, private = await communicator(app, "/ws/public/"), await communicator(app, "/ws/private/")
    assert (await public.connect())[0]
    assert await private.connect() == (False, 4401)
    await public.disconnect()


async def test_a_route_narrows_a_stack_that_allows_anonymous_clients():
    from channels.sessions import CookieMiddleware, SessionMiddleware

    app = OriginGuard(
        CookieMiddleware(
            SessionMiddleware(
                HandshakeAuth(
                    URLRouter(
                        [
                            path("ws/open/", Recording.as_asgi()),
                            path("ws/closed/", wsguard.guard(Recording.as_asgi())),
                        ]
                    ),
                    allow_anonymous=True,
                )
            )
        )
    )
    assert (await (await communicator(app, "/ws/open/")).connect())[0]
    assert await (await communicator(app, "/ws/closed/")).connect() == (False, 4401)


async def test_allow_anonymous_does_not_let_a_bad_credential_in(alice):
    comm = await communicator(stack(allow_anonymous=True), "/ws/", subprotocols=["wsguard", "wsguard.ticket.nope"])
    assert await comm.connect() == (False, 4401)


@pytest.mark.parametrize("via, allowed", [("session", False), ("ticket", True), ("token", True)])
async def test_authenticators_narrow_the_credentials(alice, via, allowed):
    comm = await communicator(stack(authenticators=["ticket", "token"]), "/ws/", user=alice, via=via)
    assert (await comm.connect())[0] is allowed
    if allowed:
        await comm.disconnect()


async def test_origins_narrow_the_trusted_origins(alice):
    app = stack(origins=["https://app.example.com"])
    trusted = await communicator(app, "/ws/", user=alice, origin="https://app.example.com")
    assert (await trusted.connect())[0]
    await trusted.disconnect()
    # Trusted by the stack (settings) and same-origin, but not by this route:
    for origin in ("https://x.partner.example", "http://testserver"):
        comm = await communicator(app, "/ws/", user=alice, origin=origin)
        assert await comm.connect() == (False, 4403)


async def test_a_route_cannot_trust_an_origin_the_stack_refuses(alice):
    app = stack(origins=["https://evil.example"])
    comm = await communicator(app, "/ws/", user=alice, origin="https://evil.example")
    assert await comm.connect() == (False, 4403)


async def test_origins_refuse_a_socket_without_origin(alice):
    with override_settings(WSGUARD={"MISSING_ORIGIN": "token", "ALLOWED_ORIGINS": []}):
        app = stack(origins=["https://app.example.com"])
        comm = await communicator(app, "/ws/", user=alice, via="token", origin=None)
        assert await comm.connect() == (False, 4403)
        open_route = stack()
        token = await communicator(open_route, "/ws/", user=alice, via="token", origin=None)
        assert (await token.connect())[0]
        await token.disconnect()


@pytest.mark.parametrize("via", ["session", "ticket", None])
async def test_without_an_origin_only_a_token_authenticates(alice, via):
    with override_settings(WSGUARD={"MISSING_ORIGIN": "token", "ALLOWED_ORIGINS": []}):
        comm = await communicator(
            stack(allow_anonymous=True), "/ws/", user=alice if via else None, via=via or "session", origin=None
        )
        assert await comm.connect() == (False, 4401)


async def test_report_only_lets_a_refused_route_through_and_logs_it(caplog):
    with override_settings(WSGUARD={"REPORT_ONLY": True, "ALLOWED_ORIGINS": []}):
        comm = await communicator(stack(authenticators=["token"]), "/ws/")
        assert (await comm.connect())[0]
        await comm.disconnect()
    assert "would deny" in caplog.text


def test_widening_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="never widen"):
        wsguard.guard(Recording.as_asgi(), authenticators=["password"])
    with pytest.raises(ValueError, match="list of names"):
        wsguard.guard(Recording.as_asgi(), authenticators="ticket")


async def test_without_the_stack_it_is_a_value_error_naming_guardstack():
    comm = WebsocketCommunicator(wsguard.guard(Recording.as_asgi()), "/ws/")
    with pytest.raises(ValueError, match=r"GuardStack\(URLRouter"):
        await comm.connect()


async def test_other_scope_types_pass_through():
    seen = []

    async def inner(scope, receive, send):
        seen.append(scope["type"])

    await wsguard.guard(inner)({"type": "http"}, None, None)
    assert seen == ["http"]
