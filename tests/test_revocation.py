"""Sockets end when trust ends (one process, in-memory channel layer): logout, password change,
deactivation, deletion, token revocation, expiry and re-validation close the matching sockets with
4401, and only those."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.utils import timezone

from wsguard import GuardStack, live
from wsguard.models import ApiToken
from wsguard.testing import communicator

pytestmark = pytest.mark.django_db(transaction=True)


class Accepting(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()


app = GuardStack(Accepting.as_asgi())


async def open_as(user, via="session"):
    comm = await communicator(app, "/ws/", user=user, via=via)
    assert (await comm.connect())[0]
    return comm


async def closed_with(comm) -> dict:
    message = await comm.receive_output(timeout=5)
    assert message["type"] == "websocket.close"
    return message


async def test_logout_closes_the_sessions_sockets_and_nothing_else(alice):
    client = Client()
    await sync_to_async(client.login)(username="alice", password="pw-alice-123")
    key = client.cookies["sessionid"].value
    by_cookie = await communicator(app, "/ws/", headers=[(b"cookie", f"sessionid={key}".encode())])
    assert (await by_cookie.connect())[0]
    other_session = await open_as(alice)
    await sync_to_async(client.post)("/accounts/logout/")
    assert await closed_with(by_cookie) == {"type": "websocket.close", "code": 4401, "reason": "logged-out"}
    assert await other_session.receive_nothing(timeout=0.3)
    await other_session.disconnect()


async def test_logout_closes_sockets_opened_with_the_sessions_tickets(alice):
    client = Client()
    await sync_to_async(client.login)(username="alice", password="pw-alice-123")
    response = await sync_to_async(client.post)("/wsguard/ticket/", HTTP_ORIGIN="http://testserver")
    ticket = response.json()["ticket"]
    comm = await communicator(app, "/ws/", subprotocols=["wsguard", "wsguard.ticket." + ticket])
    assert (await comm.connect())[0]
    await sync_to_async(client.post)("/accounts/logout/")
    assert (await closed_with(comm))["reason"] == "logged-out"


async def test_password_change_closes_session_and_ticket_sockets_not_token_ones(alice, bob):
    session, ticket, token = await open_as(alice), await open_as(alice, "ticket"), await open_as(alice, "token")
    bobs = await open_as(bob)
    alice.set_password("a-new-password-1")
    await database_sync_to_async(alice.save)()
    for comm in (session, ticket):
        assert await closed_with(comm) == {"type": "websocket.close", "code": 4401, "reason": "password-changed"}
    assert await token.receive_nothing(timeout=0.3)
    assert await bobs.receive_nothing(timeout=0.1)
    await token.disconnect()
    await bobs.disconnect()


async def test_deactivation_closes_every_socket_of_the_user(alice):
    comms = [await open_as(alice, via) for via in ("session", "ticket", "token")]
    alice.is_active = False
    await database_sync_to_async(alice.save)()
    for comm in comms:
        assert (await closed_with(comm))["reason"] == "user-inactive"


async def test_deleting_the_user_closes_their_sockets(alice):
    comm = await open_as(alice, "session")
    await database_sync_to_async(alice.delete)()
    assert (await closed_with(comm))["reason"] == "user-deleted"


async def test_revoking_a_token_closes_its_sockets_only(alice):
    revoked, kept = await open_as(alice, "token"), await open_as(alice, "token")

    def revoke():
        token = ApiToken.objects.get(pk=revoked.token_id)
        token.is_active = False
        token.save()

    await database_sync_to_async(revoke)()
    assert await closed_with(revoked) == {"type": "websocket.close", "code": 4401, "reason": "token-revoked"}
    assert await kept.receive_nothing(timeout=0.3)
    await kept.disconnect()


async def test_an_expired_token_socket_is_closed_by_the_sweep(alice):
    comm = await open_as(alice, "token")

    def expire():
        ApiToken.objects.filter(pk=comm.token_id).update(expires_at=timezone.now() - timedelta(seconds=1))

    await database_sync_to_async(expire)()  # a bulk update sends no signal: the sweep must find it
    (socket,) = [s for s in live.registry.all() if s.token_id == comm.token_id]
    socket.expires_at = 0.0
    assert await live.sweep(force=True) == 1
    assert await closed_with(comm) == {"type": "websocket.close", "code": 4401, "reason": "token-expired"}


async def test_revalidation_every_revalidate_seconds_finds_a_silent_change(alice):
    comm = await open_as(alice)

    def silently_deactivate():
        get_user_model().objects.filter(pk=alice.pk).update(is_active=False)

    await database_sync_to_async(silently_deactivate)()
    with override_settings(WSGUARD={"REVALIDATE_SECONDS": 0.01, "ALLOWED_ORIGINS": []}):
        await asyncio.sleep(0.05)
        assert await live.sweep(force=True) == 1
    assert (await closed_with(comm))["reason"] == "user-inactive"


async def test_revalidation_keeps_sockets_whose_credential_holds(alice):
    comm = await open_as(alice, "ticket")
    with override_settings(WSGUARD={"REVALIDATE_SECONDS": 0.01, "ALLOWED_ORIGINS": []}):
        await asyncio.sleep(0.05)
        assert await live.sweep(force=True) == 0
    assert await comm.receive_nothing(timeout=0.1)
    await comm.disconnect()
