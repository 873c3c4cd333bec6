"""Origin parsing, origin-pattern parsing and the compiled matcher.

Pure functions and immutable values only: no Django imports, no I/O. The grammar is the one in
docs/origins.md (and DESIGN.md): a pattern is written the way an ``Origin`` header is serialised,
``scheme://host[:port]``, plus a whole-leftmost-label wildcard ``*.`` and ``:*`` for any port.

Parsing an ``Origin`` header never raises: hostile bytes become a :class:`Reason`. Parsing a
pattern raises :class:`PatternError`, whose message and hint say what to write instead.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache

import idna

__all__ = [
    "ANY_PORT",
    "DEFAULT_PORTS",
    "MAX_ORIGIN_LENGTH",
    "Match",
    "Origin",
    "OriginMatcher",
    "Pattern",
    "PatternError",
    "Reason",
    "Rule",
    "is_public_suffix",
    "parse_host_header",
    "parse_origin",
    "parse_pattern",
    "path_under",
]


class Reason(StrEnum):
    """Why a handshake is denied. The values are the public, documented reason codes."""

    ORIGIN_MISSING = "origin-missing"
    ORIGIN_MALFORMED = "origin-malformed"
    ORIGIN_OPAQUE = "origin-opaque"
    ORIGIN_UNTRUSTED = "origin-untrusted"
    HOST_UNTRUSTED = "host-untrusted"


DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443, "ws": 80, "wss": 443}
ANY_PORT = -1
# Longest serialisation a browser can produce: scheme + "://" + 253-octet name + ":65535", rounded up.
MAX_ORIGIN_LENGTH = 320
MAX_HOST_LENGTH = 253
MAX_LABEL_LENGTH = 63
OPAQUE_ORIGIN = "null"

_SCHEME_RE = re.compile(r"[a-z][a-z0-9+.\-]{0,31}")
_LABEL = r"(?!-)[a-z0-9_\-]{1,63}(?<!-)"
# A whole dotted name in one C-level match (a label never contains a dot, so nothing backtracks):
# no empty label, no leading or trailing dot, no label starting or ending with a hyphen.
_NAME_RE = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
_PORT_RE = re.compile(r"[1-9][0-9]{0,4}")
# One regex search instead of a per-character loop: parse_pattern runs once per admin row and
# settings entry, and a policy may hold very many of them. ``\s`` is str.isspace's set.
_SPACE_OR_CONTROL_RE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
# scheme://host[:port] where host is a name, a dotted quad or a bracketed IPv6 literal;
# anything else (path, query, userinfo, whitespace, a second origin) fails the full match.
_ORIGIN_RE = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]{0,31})://"
    r"(?P<host>\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9_.\-]{1,253})"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


@dataclass(frozen=True, slots=True)
class Origin:
    """A parsed, normalised tuple origin (RFC 6454 section 4). ``port`` is None only for schemes
    without a default port when the serialisation carried none."""

    scheme: str
    host: str
    port: int | None

    def serialize(self) -> str:
        if self.port is None or DEFAULT_PORTS.get(self.scheme) == self.port:
            return f"{self.scheme}://{self.host}"
        return f"{self.scheme}://{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.serialize()


def _normalise_ip(host: str) -> str | None:
    """Return the canonical form of an IP literal host, ``""`` if it looks numeric but is not a
    canonical address (fail closed: ``1.2.3``, ``0x7f.1``, ``010.0.0.1``), None for a name."""
    if host.startswith("["):
        inner = host[1:-1]
        if "%" in inner:
            return ""
        try:
            return f"[{ipaddress.IPv6Address(inner).compressed}]"
        except ValueError:
            return ""
    last = host.rsplit(".", 1)[-1]
    if not last or not (last.isdigit() or last.startswith("0x")):
        return None
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        return ""
    # ipaddress rejects leading zeros already; require the exact canonical spelling anyway.
    return str(address) if str(address) == host else ""


def _valid_name(host: str) -> bool:
    return len(host) <= MAX_HOST_LENGTH and _NAME_RE.fullmatch(host) is not None


def _parse_host(host: str) -> str | None:
    """Lower-cased, validated ASCII host, or None when malformed."""
    host = host.lower()
    ip = _normalise_ip(host)
    if ip is not None:
        return ip or None
    return host if _valid_name(host) else None


def parse_origin(raw: bytes | str) -> Origin | Reason:
    """Parse one ``Origin`` header value. Never raises.

    Returns the normalised :class:`Origin`, or ``Reason.ORIGIN_OPAQUE`` for ``null`` and
    ``Reason.ORIGIN_MALFORMED`` for anything that is not exactly ``scheme://host[:port]``.
    """
    if isinstance(raw, bytes):
        if len(raw) > MAX_ORIGIN_LENGTH or not raw.isascii():
            return Reason.ORIGIN_MALFORMED
        text = raw.decode("ascii")
    elif isinstance(raw, str):
        if len(raw) > MAX_ORIGIN_LENGTH or not raw.isascii():
            return Reason.ORIGIN_MALFORMED
        text = raw
    else:
        return Reason.ORIGIN_MALFORMED
    if text == OPAQUE_ORIGIN:
        return Reason.ORIGIN_OPAQUE
    match = _ORIGIN_RE.fullmatch(text)
    if match is None:
        return Reason.ORIGIN_MALFORMED
    # Interned: the matcher compares schemes by identity first, without touching pattern memory.
    scheme = sys.intern(match["scheme"].lower())
    if scheme in ("file", "data", "about", "blob", "javascript"):
        # These never serialise to a tuple origin in a browser; a header claiming one is forged.
        return Reason.ORIGIN_OPAQUE
    host = _parse_host(match["host"])
    if host is None:
        return Reason.ORIGIN_MALFORMED
    port_text = match["port"]
    if port_text is None:
        port = DEFAULT_PORTS.get(scheme)
    else:
        if not _PORT_RE.fullmatch(port_text):
            return Reason.ORIGIN_MALFORMED
        port = int(port_text)
        if port > 65535:
            return Reason.ORIGIN_MALFORMED
    return Origin(scheme, host, port)


def parse_host_header(raw: bytes | str, scheme: str) -> tuple[str, int | None] | None:
    """Parse an HTTP ``Host`` header (``host[:port]``) into a normalised (host, port) pair, the
    port defaulting to the scheme's. None when malformed. Never raises."""
    try:
        text = raw.decode("ascii") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        return None
    if not text or len(text) > MAX_ORIGIN_LENGTH or not text.isascii():
        return None
    parsed = parse_origin(f"{scheme}://{text}")
    if not isinstance(parsed, Origin):
        return None
    return parsed.host, parsed.port


# --- patterns ---------------------------------------------------------------------------------


class PatternError(ValueError):
    """A trusted-origin pattern that is not in the grammar. ``hint`` says what to write instead."""

    def __init__(self, pattern: object, message: str, hint: str) -> None:
        self.pattern = pattern
        self.message = message
        self.hint = hint
        super().__init__(f"{pattern!r}: {message} {hint}")


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled trusted-origin pattern.

    ``host`` is the exact host, or for a wildcard the suffix below the star (``example.com`` for
    ``https://*.example.com``). ``port`` is a number, ``ANY_PORT``, or None for a scheme without
    a default port written without one. ``scheme`` is "*" only for the match-everything pattern.
    """

    text: str
    scheme: str
    host: str
    port: int | None
    wildcard: bool = False

    @property
    def matches_everything(self) -> bool:
        return self.scheme == "*"

    def matches(self, origin: Origin) -> bool:
        """Reference semantics (the compiled :class:`OriginMatcher` must agree with this)."""
        if self.matches_everything:
            return True
        if origin.scheme != self.scheme:
            return False
        if self.port != ANY_PORT and origin.port != self.port:
            return False
        if self.wildcard:
            return origin.host.endswith("." + self.host) and not origin.host.startswith("[")
        return origin.host == self.host

    def __str__(self) -> str:
        return self.text


@lru_cache(maxsize=1)
def _public_suffix_list() -> object:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def is_public_suffix(domain: str) -> bool:
    """True when ``domain`` is a public suffix, ICANN or private section (``com``, ``co.uk``,
    ``github.io``), or an unlisted top-level name (the list's implicit ``*`` rule)."""
    psl = _public_suffix_list()
    return bool(psl.is_public(domain))  # type: ignore[attr-defined]


def _to_ascii_host(host: str, pattern: str) -> str:
    if host.isascii():
        return host.lower()
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise PatternError(
            pattern,
            f"the host {host!r} is not a valid internationalised domain name ({exc}).",
            "Write the host as it appears in the browser's address bar, or in punycode (xn--…).",
        ) from None


def parse_pattern(pattern: object) -> Pattern:
    """Compile one trusted-origin pattern, raising :class:`PatternError` with a hint."""
    if not isinstance(pattern, str):
        raise PatternError(
            pattern,
            f"a pattern must be a string, not {type(pattern).__name__}.",
            'Write it as "https://example.com".',
        )
    text = pattern.strip()
    if text != pattern or not text:
        raise PatternError(pattern, "empty or surrounded by whitespace.", 'Write "https://example.com".')
    if text == "*":
        return Pattern(text="*", scheme="*", host="*", port=ANY_PORT)
    if text.lower() == OPAQUE_ORIGIN:
        raise PatternError(
            pattern,
            "'null' is the opaque origin of sandboxed frames and file: pages; anyone can produce it.",
            "It is never trusted: serve the page from a real origin and list that origin.",
        )
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise PatternError(
            pattern,
            "has no scheme.",
            f'Write the scheme too, as an Origin header is sent: "https://{text.rstrip("/")}".',
        )
    scheme = sys.intern(scheme.lower())
    if not _SCHEME_RE.fullmatch(scheme):
        raise PatternError(pattern, f"{scheme!r} is not a URL scheme.", 'Write "https://…" or "http://…".')
    for char, what in (("/", "a path"), ("?", "a query"), ("#", "a fragment"), ("@", "userinfo")):
        if char in rest:
            bare = rest.split("/")[0].split("?")[0].split("#")[0].rpartition("@")[2]
            raise PatternError(
                pattern,
                f"contains {what}; an origin is only scheme://host[:port].",
                f'Write "{scheme}://{bare}".',
            )
    if _SPACE_OR_CONTROL_RE.search(rest):
        raise PatternError(pattern, "contains whitespace or control characters.", "Remove them.")
    host, port = _split_host_port(rest, pattern)
    port_value = _parse_port(port, scheme, pattern)
    wildcard = False
    if "*" in host:
        if not host.startswith("*.") or "*" in host[2:]:
            raise PatternError(
                pattern,
                "a star may only be the whole leftmost label.",
                f'Write "{scheme}://*.{host.rsplit("*", 1)[-1].lstrip(".") or "example.com"}" '
                "to trust every subdomain, or list each host.",
            )
        wildcard = True
        host = host[2:]
    ascii_host = _to_ascii_host(host, pattern)
    normal = _parse_host(ascii_host)
    if normal is None:
        raise PatternError(
            pattern,
            f"the host {host!r} is not a valid host name or IP address.",
            "Write a name such as example.com, a dotted IPv4 address, or a bracketed IPv6 address; no trailing dot.",
        )
    if wildcard:
        if normal.startswith("[") or _normalise_ip(normal) is not None:
            raise PatternError(pattern, "a wildcard cannot cover an IP address.", "List the address itself.")
        if is_public_suffix(normal):
            raise PatternError(
                pattern,
                f"{normal!r} is a public suffix: the wildcard would trust sites anyone can register.",
                f'List your own domains instead, such as "{scheme}://*.yourname.{normal}".',
            )
    text_port = "" if port is None else f":{port}"
    canonical = f"{scheme}://{'*.' if wildcard else ''}{normal}{text_port}"
    if port_value is not None and port_value == DEFAULT_PORTS.get(scheme):
        canonical = f"{scheme}://{'*.' if wildcard else ''}{normal}"
    return Pattern(text=canonical, scheme=scheme, host=normal, port=port_value, wildcard=wildcard)


def _split_host_port(rest: str, pattern: str) -> tuple[str, str | None]:
    if rest.startswith("["):
        end = rest.find("]")
        if end == -1:
            raise PatternError(pattern, "an IPv6 literal is missing its ']'.", 'Write "https://[::1]:8443".')
        host, after = rest[: end + 1], rest[end + 1 :]
        if not after:
            return host, None
        if not after.startswith(":"):
            raise PatternError(pattern, "unexpected text after the IPv6 literal.", 'Write "https://[::1]:8443".')
        return host, after[1:]
    if rest.count(":") > 1:
        raise PatternError(
            pattern, "has more than one ':'.", "Bracket IPv6 literals ([::1]) and give at most one port."
        )
    host, sep, port = rest.partition(":")
    if not host:
        raise PatternError(pattern, "has no host.", 'Write "https://example.com".')
    return host, (port if sep else None)


def _parse_port(port: str | None, scheme: str, pattern: str) -> int | None:
    if port is None:
        return DEFAULT_PORTS.get(scheme)
    if port == "*":
        return ANY_PORT
    if not _PORT_RE.fullmatch(port) or int(port) > 65535:
        raise PatternError(
            pattern,
            f"the port {port!r} is not a number from 1 to 65535.",
            "Write ':8443' for one port, ':*' for any port, or nothing for the scheme's default.",
        )
    return int(port)


# --- compiled matcher -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """A pattern plus where it applies. ``path_prefix`` "" means every websocket path;
    ``source`` names where the trust came from (``settings``, ``admin:<id>``, ``route``)."""

    pattern: Pattern
    path_prefix: str = ""
    source: str = "settings"

    def applies_to(self, path: str) -> bool:
        return path_under(self.path_prefix, path)


def path_under(prefix: str, path: str) -> bool:
    """True when ``path`` is ``prefix`` itself or lies below it on a segment boundary, so a scope
    of ``/ws/chat`` does not also cover ``/ws/chat-admin/``. An empty prefix covers every path."""
    if not prefix or prefix.endswith("/"):
        return path.startswith(prefix)
    return path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True, slots=True)
class Match:
    rule: Rule

    @property
    def pattern(self) -> Pattern:
        return self.rule.pattern


# (scheme, port, path prefix, the Match to return): flat, so a probe that finds a host does not
# chase rule -> pattern -> port pointers, and no Match is allocated per decision.
_Entry = tuple[str, "int | None", str, Match]


def _entry(rule: Rule) -> _Entry:
    return (rule.pattern.scheme, rule.pattern.port, rule.path_prefix, Match(rule))


def _first(entries: tuple[_Entry, ...], scheme: str, port: int | None, path: str) -> Match | None:
    for entry_scheme, entry_port, prefix, found in entries:
        if (
            entry_scheme == scheme
            and (entry_port == port or entry_port == ANY_PORT)
            and (not prefix or found.rule.applies_to(path))
        ):
            return found
    return None


@dataclass(frozen=True)
class OriginMatcher:
    """Decides whether an :class:`Origin` is trusted for a path.

    Exact patterns sit in a hash table keyed by host; wildcard patterns in another keyed by the
    suffix below the star. A decision is one probe for the exact host, then one probe per
    wildcard *depth* that occurs in the policy (usually one or two), most specific first. The
    cost of a decision depends on the origin's length, not on how many patterns there are.
    """

    rules: tuple[Rule, ...]
    _exact: dict[str, tuple[_Entry, ...]] = field(repr=False, compare=False)
    _wild: dict[str, tuple[_Entry, ...]] = field(repr=False, compare=False)
    # Label counts of the wildcard suffixes present, deepest first: only those suffixes are probed.
    _wild_depths: tuple[int, ...] = field(repr=False, compare=False)
    _everything: tuple[_Entry, ...] = field(repr=False, compare=False)

    @classmethod
    def compile(cls, rules: Iterable[Rule | Pattern | str]) -> OriginMatcher:
        compiled: list[Rule] = []
        exact: dict[str, list[_Entry]] = {}
        wild: dict[str, list[_Entry]] = {}
        depths: set[int] = set()
        everything: list[_Entry] = []
        for item in rules:
            if isinstance(item, str):
                rule = Rule(parse_pattern(item))
            elif isinstance(item, Pattern):
                rule = Rule(item)
            else:
                rule = item
            compiled.append(rule)
            pattern = rule.pattern
            if pattern.matches_everything:
                everything.append(_entry(rule))
            elif pattern.wildcard:
                wild.setdefault(pattern.host, []).append(_entry(rule))
                depths.add(pattern.host.count(".") + 1)
            else:
                exact.setdefault(pattern.host, []).append(_entry(rule))
        return cls(
            rules=tuple(compiled),
            _exact={k: tuple(v) for k, v in exact.items()},
            _wild={k: tuple(v) for k, v in wild.items()},
            _wild_depths=tuple(sorted(depths, reverse=True)),
            _everything=tuple(everything),
        )

    def __len__(self) -> int:
        return len(self.rules)

    def match(self, origin: Origin, path: str = "") -> Match | None:
        """A rule that trusts ``origin`` on ``path`` (exact before wildcard, deeper wildcard
        before shallower, then ``*``; in list order within each), or None."""
        scheme = origin.scheme
        host = origin.host
        port = origin.port
        entries = self._exact.get(host)
        if entries is not None:
            found = _first(entries, scheme, port, path)
            if found is not None:
                return found
        if self._wild_depths and not host.startswith("["):
            # dots[d - 1] is where the suffix of d labels starts; a wildcard never covers the
            # whole host (its apex), so at most (labels - 1) labels are taken.
            dots: list[int] = []
            end = len(host)
            for _ in range(self._wild_depths[0]):
                end = host.rfind(".", 0, end)
                if end == -1:
                    break
                dots.append(end)
            wild = self._wild
            for depth in self._wild_depths:
                if depth <= len(dots):
                    entries = wild.get(host[dots[depth - 1] + 1 :])
                    if entries is not None:
                        found = _first(entries, scheme, port, path)
                        if found is not None:
                            return found
        for _, _, prefix, found in self._everything:
            if not prefix or found.rule.applies_to(path):
                return found
        return None

    def nearest(self, origin: Origin, limit: int = 1) -> Sequence[Rule]:
        """Rules most similar to ``origin`` (for explanations; linear in the number of rules)."""
        import difflib

        target = origin.serialize()
        scored = sorted(
            self.rules,
            key=lambda r: -difflib.SequenceMatcher(None, target, r.pattern.text).ratio(),
        )
        return scored[:limit]
