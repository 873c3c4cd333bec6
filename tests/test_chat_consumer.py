"""The demo chat's consumer behind the real wsguard stack: history, persistence before broadcast,
length bounds, escaping, presence. Sockets carry real session cookies through WebsocketCommunicator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError
from django.test import Client

from demo_project.chat import store
from demo_project.chat.models import MAX_MESSAGE_CHARS, Message, Room
from demo_project.routing import websocket_urlpatterns
from wsguard import GuardStack

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"https://app.example.com"
HOST = b"app.example.com"


@pytest.fixture(autouse=True)
async def _empty_channel_layer() -> AsyncIterator[None]:
    layer = get_channel_layer()
    await layer.flush()
    yield
    await layer.flush()


@sync_to_async
def session_cookie(username: str) -> str:
    user = get_user_model().objects.get_or_create(username=username)[0]
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


@sync_to_async
def make_room(slug: str = "lobby", title: str = "Lobby") -> Room:
    return Room.objects.get_or_create(slug=slug, defaults={"title": title})[0]


@sync_to_async
def stored(**filters: Any) -> list[Message]:
    return list(Message.objects.filter(**filters).select_related("author"))


async def join(username: str | None, room: str = "lobby") -> WebsocketCommunicator:
    headers = [(b"host", HOST), (b"origin", ORIGIN)]
    if username is not None:
        cookie = await session_cookie(username)
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    comm = WebsocketCommunicator(GuardStack(URLRouter(websocket_urlpatterns)), f"/ws/chat/{room}/", headers=headers)
    comm.scope["scheme"] = "wss"
    return comm


async def joined(username: str, room: str = "lobby") -> tuple[WebsocketCommunicator, dict]:
    comm = await join(username, room)
    connected, code = await comm.connect(timeout=5)
    assert connected, code
    history = await comm.receive_json_from(timeout=5)
    assert history["type"] == "history"
    return comm, history


async def next_of(comm: WebsocketCommunicator, kind: str, wait: float = 5) -> dict:
    """The next frame of type ``kind``, skipping others (presence updates arrive in between)."""
    for _ in range(50):
        frame = await comm.receive_json_from(timeout=wait)
        if frame["type"] == kind:
            return frame
    raise AssertionError(f"no {kind!r} frame")


async def test_join_sends_the_last_50_messages_oldest_first():
    room = await make_room()

    @sync_to_async
    def fill() -> None:
        author = get_user_model().objects.create(username="carol")
        Message.objects.bulk_create(Message(room=room, author=author, text=f"message {i}") for i in range(60))

    await fill()
    comm, history = await joined("alice")
    assert [m["text"] for m in history["messages"]] == [f"message {i}" for i in range(10, 60)]
    assert history["you"] == "alice"
    assert history["room"] == {"slug": "lobby", "title": "Lobby"}
    assert history["max_chars"] == MAX_MESSAGE_CHARS
    assert all(m["author"] == "carol" for m in history["messages"])
    await comm.disconnect()


async def test_history_is_per_room():
    await make_room()
    other = await make_room("random", "Random")
    author = await sync_to_async(get_user_model().objects.create)(username="carol")
    await sync_to_async(Message.objects.create)(room=other, author=author, text="elsewhere")
    comm, history = await joined("alice")
    assert history["messages"] == []
    await comm.disconnect()


async def test_a_message_is_stored_before_the_room_sees_it_and_before_the_ack():
    await make_room()
    alice, _ = await joined("alice")
    bob, _ = await joined("bob")
    await alice.send_json_to({"type": "message", "text": "hello bob", "nonce": "n-1"})

    seen_by_bob = await next_of(bob, "message")
    # When bob's page gets the message it is already committed: a reader in another thread sees it.
    (row,) = await stored(id=seen_by_bob["message"]["id"])
    assert (row.text, row.author.username, row.nonce) == ("hello bob", "alice", "n-1")
    assert seen_by_bob["message"]["author"] == "alice"

    ack = await next_of(alice, "ack")
    assert ack == {"type": "ack", "nonce": "n-1", "id": row.id, "message": seen_by_bob["message"]}
    await alice.disconnect()
    await bob.disconnect()


async def test_a_message_that_cannot_be_stored_is_neither_broadcast_nor_acknowledged(monkeypatch):
    await make_room()
    alice, _ = await joined("alice")
    bob, _ = await joined("bob")
    await next_of(bob, "presence")

    def broken_create(*args: Any, **kwargs: Any) -> Message:
        raise DatabaseError("disk full")

    monkeypatch.setattr(Message.objects, "create", broken_create)
    await alice.send_json_to({"type": "message", "text": "lost?", "nonce": "n-2"})
    error = await next_of(alice, "error")
    assert (error["code"], error["nonce"]) == ("not-saved", "n-2")
    assert not await stored(text="lost?")
    # bob got no message frame: only (possibly) presence updates.
    while not await bob.receive_nothing(timeout=0.2):
        assert (await bob.receive_json_from())["type"] == "presence"
    await alice.disconnect()
    await bob.disconnect()


async def test_a_resent_nonce_is_stored_once_and_acknowledged_with_the_same_id():
    await make_room()
    alice, _ = await joined("alice")
    await alice.send_json_to({"type": "message", "text": "once", "nonce": "same"})
    first = await next_of(alice, "ack")
    await alice.disconnect()

    # A page that lost its socket before the ack re-sends on a new connection.
    again, history = await joined("alice")
    assert [m["id"] for m in history["messages"]] == [first["id"]]
    await again.send_json_to({"type": "message", "text": "once", "nonce": "same"})
    second = await next_of(again, "ack")
    assert second["id"] == first["id"]
    assert len(await stored(text="once")) == 1
    await again.disconnect()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("x" * (MAX_MESSAGE_CHARS + 1), "too-long"),
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("\x00\x07", "empty"),
        (42, "bad-message"),
        (None, "bad-message"),
        (["a"], "bad-message"),
    ],
)
async def test_bad_messages_are_refused_and_not_stored(text: object, code: str):
    await make_room()
    alice, _ = await joined("alice")
    await alice.send_json_to({"type": "message", "text": text, "nonce": "bad"})
    error = await next_of(alice, "error")
    assert (error["code"], error["nonce"]) == (code, "bad")
    assert not await stored()
    await alice.disconnect()


async def test_the_longest_message_allowed_is_stored_whole():
    await make_room()
    alice, _ = await joined("alice")
    text = "é" * MAX_MESSAGE_CHARS
    await alice.send_json_to({"type": "message", "text": text})
    message = await next_of(alice, "message")
    assert message["message"]["text"] == text
    (row,) = await stored()
    assert row.text == text
    await alice.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        json.dumps(["message"]),
        json.dumps({"type": "join", "text": "x"}),
        json.dumps({"type": "message", "text": "x", "nonce": "n" * 65}),
        json.dumps({"type": "message", "text": "x", "nonce": "bad nonce\n"}),
    ],
)
async def test_malformed_frames_get_an_error_and_the_socket_stays_open(frame: str):
    await make_room()
    alice, _ = await joined("alice")
    await alice.send_to(text_data=frame)
    error = await next_of(alice, "error")
    assert error["code"] in ("bad-message", "bad-nonce")
    await alice.send_to(bytes_data=b"\x00binary")
    assert (await next_of(alice, "error"))["code"] == "bad-message"
    await alice.send_json_to({"type": "message", "text": "still here"})
    assert (await next_of(alice, "message"))["message"]["text"] == "still here"
    assert [m.text for m in await stored()] == ["still here"]
    await alice.disconnect()


async def test_markup_is_kept_as_text_and_control_characters_are_dropped():
    await make_room()
    alice, _ = await joined("alice")
    markup = '<img src=x onerror="alert(1)"><script>alert(2)</script> &amp; </script>'
    await alice.send_json_to({"type": "message", "text": markup + "\x1b[31m\u202e"})
    message = await next_of(alice, "message")
    # Stored and sent exactly as typed (minus control characters): not escaped twice on the
    # server, not interpreted anywhere; pages render it with textContent.
    assert message["message"]["text"] == markup + "[31m"
    (row,) = await stored()
    assert row.text == markup + "[31m"
    await alice.disconnect()


async def test_line_breaks_are_kept():
    await make_room()
    alice, _ = await joined("alice")
    await alice.send_json_to({"type": "message", "text": "  one\r\ntwo\tthree  "})
    assert (await next_of(alice, "message"))["message"]["text"] == "one\ntwo\tthree"
    await alice.disconnect()


async def test_who_is_online_follows_joins_and_leaves():
    await make_room()
    alice, _ = await joined("alice")
    assert (await next_of(alice, "presence"))["users"] == ["alice"]
    bob, _ = await joined("bob")
    assert (await next_of(alice, "presence"))["users"] == ["alice", "bob"]
    users: list[str] = []
    while users != ["alice", "bob"]:
        users = (await next_of(bob, "presence"))["users"]
    await bob.disconnect()
    assert (await next_of(alice, "presence"))["users"] == ["alice"]
    await alice.disconnect()


async def test_an_anonymous_socket_is_refused():
    await make_room()
    comm = await join(None)
    connected, code = await comm.connect(timeout=5)
    assert not connected
    assert code == 4401
    await comm.disconnect()


async def test_an_unknown_room_is_refused():
    comm = await join("alice", room="nowhere")
    connected, code = await comm.connect(timeout=5)
    assert not connected
    assert code == 4404
    await comm.disconnect()


async def test_a_foreign_origin_never_reaches_the_consumer():
    await make_room()
    cookie = await session_cookie("alice")
    comm = WebsocketCommunicator(
        GuardStack(URLRouter(websocket_urlpatterns)),
        "/ws/chat/lobby/",
        headers=[
            (b"host", HOST),
            (b"origin", b"https://evil.example"),
            (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()),
        ],
    )
    connected, code = await comm.connect(timeout=5)
    assert (connected, code) == (False, 4403)
    assert await comm.receive_nothing(timeout=0.1)


def test_the_room_page_escapes_what_it_renders(client, django_user_model):
    Room.objects.create(slug="evil", title='<img src=x onerror="alert(1)">')
    client.force_login(django_user_model.objects.create(username="alice"))
    page = client.get("/rooms/evil/").content.decode()
    assert '<img src=x onerror="alert(1)">' not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    listing = client.get("/").content.decode()
    assert '<img src=x onerror="alert(1)">' not in listing


def test_the_room_page_needs_a_signed_in_user(client):
    Room.objects.create(slug="lobby", title="Lobby")
    response = client.get("/rooms/lobby/")
    assert response.status_code == 302
    assert response["Location"].startswith(settings.LOGIN_URL)


def test_the_page_script_never_writes_html():
    from pathlib import Path

    script = Path(settings.BASE_DIR, "demo_project/chat/static/chat/chat.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


def test_clean_text_bounds_are_in_characters_not_bytes():
    assert store.clean_text("€" * MAX_MESSAGE_CHARS) == "€" * MAX_MESSAGE_CHARS
    with pytest.raises(store.InvalidMessage):
        store.clean_text("€" * (MAX_MESSAGE_CHARS + 1))

