"""The rule that picks the one authenticator that decides (wsguard.auth.decide), as a table of
authenticators that are present or not and what each would say."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from wsguard.auth import Accepted, Denied, Handshake, decide
from wsguard.auth.reasons import AuthReason


@dataclass
class Fake:
    name: str
    explicit: bool
    is_present: bool
    says: object
    calls: int = 0

    def present(self, handshake: Handshake) -> bool:
        return self.is_present

    def authenticate(self, handshake: Handshake):
        self.calls += 1
        return self.says


def handshake(token_only: bool = False) -> Handshake:
    return Handshake(scope={}, path="/ws/", origin=None, token_only=token_only, cookies={})


OK = Accepted(user=object(), credential="x")
BAD = Denied(AuthReason.AUTH_INVALID)


def test_an_explicit_credential_outranks_the_cookie_and_is_never_a_fallback():
    session = Fake("session", False, True, OK)
    token = Fake("token", True, True, BAD)
    assert decide([session, token], handshake()) == (token, BAD)
    assert session.calls == 0


def test_an_anonymous_answer_never_hides_a_valid_session():
    custom = Fake("custom-cookie", False, True, None)
    session = Fake("session", False, True, OK)
    assert decide([custom, session], handshake()) == (session, OK)


def test_the_first_present_ambient_authenticator_that_answers_decides():
    first = Fake("a", False, True, BAD)
    second = Fake("b", False, True, OK)
    assert decide([first, second], handshake()) == (first, BAD)
    assert second.calls == 0


def test_two_explicit_kinds_are_ambiguous_and_nothing_is_looked_up():
    ticket, token = Fake("ticket", True, True, OK), Fake("token", True, True, OK)
    assert decide([ticket, token], handshake())[1] == Denied(AuthReason.AUTH_AMBIGUOUS)
    assert ticket.calls == token.calls == 0


def test_an_explicit_credential_that_names_nobody_is_invalid():
    ticket = Fake("ticket", True, True, None)
    assert decide([ticket], handshake())[1] == Denied(AuthReason.AUTH_INVALID)


def test_absent_authenticators_are_not_asked():
    absent = Fake("ticket", True, False, OK)
    assert decide([absent], handshake()) == (None, None)
    assert absent.calls == 0


@pytest.mark.parametrize(
    "present, allowed",
    [([], False), (["ticket"], False), (["session"], False), (["token"], True)],
)
def test_without_an_origin_only_a_token_may_decide(present, allowed):
    authenticators = [
        Fake("session", False, "session" in present, OK),
        Fake("ticket", True, "ticket" in present, OK),
        Fake("token", True, "token" in present, OK),
    ]
    _, outcome = decide(authenticators, handshake(token_only=True))
    assert (outcome == OK) is allowed
    if not allowed:
        assert outcome == Denied(AuthReason.TOKEN_REQUIRED)
