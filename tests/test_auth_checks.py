"""System checks of the authentication step: the websocket application tree (E023, E024, W020,
W021) and the AUTHENTICATORS setting (E021, E025), directly and through ``manage.py check``."""

from __future__ import annotations

import pytest
from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django.urls import path

from wsguard import GuardStack, guard
from wsguard.checks import check_settings, check_websocket_stack
from wsguard.middleware import OriginGuard


class Consumer(AsyncWebsocketConsumer):
    pass


def routes(*extra):
    return URLRouter([path("ws/a/", Consumer.as_asgi()), *extra])


guarded = ProtocolTypeRouter({"websocket": GuardStack(routes(path("ws/open/", guard(Consumer.as_asgi()))))})
unguarded_session = ProtocolTypeRouter({"websocket": AuthMiddlewareStack(routes())})
channels_only = ProtocolTypeRouter({"websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(routes()))})
no_guard_at_all = ProtocolTypeRouter({"websocket": routes()})
guard_without_stack = ProtocolTypeRouter({"websocket": OriginGuard(routes(path("ws/g/", guard(Consumer.as_asgi()))))})
mixed = ProtocolTypeRouter(
    {"websocket": URLRouter([path("safe/", GuardStack(routes())), path("raw/", routes())])}
)


def ids_for(app_name: str) -> list[str]:
    with override_settings(ASGI_APPLICATION=f"tests.test_auth_checks.{app_name}"):
        return sorted(m.id for m in check_websocket_stack())


def test_the_whole_stack_passes():
    assert ids_for("guarded") == []


def test_session_auth_with_no_origin_check_is_an_error():
    assert ids_for("unguarded_session") == ["wsguard.E023", "wsguard.W020"]


def test_session_auth_behind_channels_validator_only_is_a_warning():
    assert ids_for("channels_only") == ["wsguard.W021"]


def test_a_route_no_guard_covers_is_a_warning():
    assert ids_for("no_guard_at_all") == ["wsguard.W020"]


def test_guard_without_authentication_above_is_an_error():
    assert ids_for("guard_without_stack") == ["wsguard.E024"]


def test_each_route_is_judged_on_its_own():
    with override_settings(ASGI_APPLICATION="tests.test_auth_checks.mixed"):
        (message,) = check_websocket_stack()
    assert message.id == "wsguard.W020" and "raw/ws/a/" in message.msg


def test_the_demo_project_passes():
    assert ids_for("guarded") == []
    with override_settings(ASGI_APPLICATION="demo_project.asgi.application"):
        assert check_websocket_stack() == []


@pytest.mark.parametrize(
    "value, check_id",
    [
        ([], "wsguard.E021"),
        ("wsguard.auth.tickets.TicketAuthenticator", "wsguard.E021"),
        (["wsguard.auth.tickets.TicketAuthenticator"] * 2, "wsguard.E021"),
        (["wsguard.auth.nothing.Here"], "wsguard.E025"),
        (["wsguard.conf.parse_rate"], "wsguard.E025"),
    ],
)
def test_bad_authenticators(value, check_id):
    with override_settings(WSGUARD={"AUTHENTICATORS": value}):
        ids = [m.id for m in check_settings()] + [m.id for m in check_websocket_stack()]
    assert check_id in ids


@pytest.mark.parametrize("value", ["100", "0/minute", "5/fortnight", 5, "1/s/x"])
def test_bad_rates_are_e020(value):
    with override_settings(WSGUARD={"MESSAGE_RATE": value}):
        assert "wsguard.E020" in [m.id for m in check_settings()]


def test_through_manage_py_check():
    with override_settings(ASGI_APPLICATION="tests.test_auth_checks.unguarded_session"):
        with pytest.raises(SystemCheckError, match=r"wsguard\.E023"):
            call_command("check")
