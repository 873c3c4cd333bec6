"""One-time tickets: the endpoint (login, CSRF, JSON, Origin binding) and the cache entry (256
bits, only a hash stored, redeemed exactly once: fifty concurrent redemptions against a real
Redis give one success)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import caches
from django.test import Client, override_settings

from wsguard.auth import tickets
from wsguard.auth.reasons import AuthReason

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/accounts/login/")  # sets the CSRF cookie, as the page the fetch runs on would
    return client


def post_ticket(client: Client, **extra):
    token = client.cookies["csrftoken"].value
    return client.post("/wsguard/ticket/", HTTP_X_CSRFTOKEN=token, **extra)


def test_a_logged_in_same_origin_post_gets_a_ticket(logged_in):
    response = post_ticket(logged_in, HTTP_ORIGIN="http://testserver")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    body = response.json()
    assert body["expires_in"] == 30
    assert len(body["ticket"]) >= 43  # 32 random bytes, URL-safe base64


def test_the_ticket_url_is_named():
    from django.urls import reverse

    assert reverse("wsguard:ticket") == "/wsguard/ticket/"


def test_without_the_csrf_token_the_post_is_refused(logged_in):
    assert logged_in.post("/wsguard/ticket/", HTTP_ORIGIN="http://testserver").status_code == 403


def test_a_foreign_origin_is_refused_by_the_csrf_check(logged_in):
    assert post_ticket(logged_in, HTTP_ORIGIN="https://evil.example").status_code == 403


def test_anonymous_users_get_no_ticket():
    client = Client(enforce_csrf_checks=True)
    client.get("/accounts/login/")
    response = post_ticket(client, HTTP_ORIGIN="http://testserver")
    assert response.status_code == 401
    assert response.json()["error"] == "auth-required"


def test_get_is_not_allowed(logged_in):
    assert logged_in.get("/wsguard/ticket/").status_code == 405


def test_the_ticket_binds_the_origin_header_or_the_requests_own(logged_in):
    with_header = post_ticket(logged_in, HTTP_ORIGIN="http://testserver").json()["ticket"]
    without = post_ticket(logged_in, HTTP_REFERER="http://testserver/").json()["ticket"]
    assert tickets.redeem(with_header).origin == "http://testserver"
    assert tickets.redeem(without).origin == "http://testserver"


def test_a_path_prefix_can_be_requested_and_is_validated(logged_in):
    ticket = post_ticket(logged_in, HTTP_ORIGIN="http://testserver", data={"path": "/ws/chat/"}).json()["ticket"]
    assert tickets.redeem(ticket).path_prefix == "/ws/chat/"
    bad = post_ticket(logged_in, HTTP_ORIGIN="http://testserver", data={"path": "ws/no-slash"})
    assert bad.status_code == 400 and bad.json()["error"] == "bad-path"


def test_only_a_hash_of_the_ticket_is_in_the_cache(alice):
    ticket, _ = tickets.mint(alice, origin="http://testserver", session_key="k" * 32)
    store = caches["default"]
    assert store.get(tickets.KEY_PREFIX + ticket) is None
    entry = store.get(tickets._key(ticket))
    assert entry is not None and ticket not in repr(entry) and "k" * 32 not in repr(entry)


def test_tickets_are_distinct_and_long(alice):
    minted = {tickets.mint(alice, origin="http://testserver", session_key=None)[0] for _ in range(200)}
    assert len(minted) == 200
    assert all(len(t) == 43 for t in minted)


@pytest.mark.parametrize("value", ["", "x" * 300, "ticket with spaces", "tïcket", "a/b", "%00"])
def test_malformed_tickets_are_invalid_without_touching_the_cache(value):
    assert tickets.redeem(value) == AuthReason.AUTH_INVALID


def test_an_unknown_ticket_is_invalid_and_a_spent_one_reused(alice):
    assert tickets.redeem("A" * 43) == AuthReason.AUTH_INVALID
    ticket, _ = tickets.mint(alice, origin="http://testserver", session_key=None)
    assert isinstance(tickets.redeem(ticket), tickets.Grant)
    assert tickets.redeem(ticket) == AuthReason.TICKET_REUSED


def test_an_expired_ticket_says_so(alice):
    with override_settings(WSGUARD={"TICKET_TTL": 1}):
        ticket, ttl = tickets.mint(alice, origin="http://testserver", session_key=None)
        assert ttl == 1
        time.sleep(1.1)
        assert tickets.redeem(ticket) == AuthReason.TICKET_EXPIRED


def redeem_concurrently(ticket: str, n: int = 50) -> list[object]:
    barrier = threading.Barrier(n)

    def attempt(_: int) -> object:
        barrier.wait(timeout=30)
        return tickets.redeem(ticket)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(attempt, range(n)))


@pytest.mark.redis
def test_fifty_concurrent_redemptions_against_real_redis_give_one_success(alice, redis_url):
    redis_cache = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}}
    with override_settings(CACHES=redis_cache):
        caches["default"].clear()
        for _ in range(3):
            ticket, _ = tickets.mint(alice, origin="http://testserver", session_key=None)
            results = redeem_concurrently(ticket)
            assert sum(isinstance(r, tickets.Grant) for r in results) == 1
            assert results.count(AuthReason.TICKET_REUSED) == 49


def test_fifty_concurrent_redemptions_in_local_memory_give_one_success(alice):
    ticket, _ = tickets.mint(alice, origin="http://testserver", session_key=None)
    results = redeem_concurrently(ticket)
    assert sum(isinstance(r, tickets.Grant) for r in results) == 1
