"""A Cross-Site WebSocket Hijacking probe for any WebSocket endpoint (``manage.py wsguard_probe``).

The probe sends a fixed battery of raw HTTP/1.1 upgrade requests whose ``Origin`` headers are
forged, missing, duplicated, malformed or look-alikes of the target's own origin, and reports
which of them the server upgraded (``101``). It writes the requests itself, byte for byte, so
duplicated and malformed headers reach the server exactly as listed.

Bounds: one request per battery row (no retries, no loops), a timeout per request, a small
concurrency limit, and one destination: the host and port written in the URL. Look-alike names
only ever appear inside the ``Origin`` header; redirects are not followed and no other host is
derived to connect to. Cookies and credential headers are sent but never printed.

Nothing here imports Django: the management command is a thin wrapper around :func:`run_probe`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import ssl
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from urllib.parse import urlsplit

from .origins import DEFAULT_PORTS, Origin, is_public_suffix, parse_origin

__all__ = [
    "MAX_CONCURRENCY",
    "Category",
    "Outcome",
    "Overall",
    "ProbeError",
    "ProbeReport",
    "Response",
    "Row",
    "RowResult",
    "Target",
    "Verdict",
    "build_battery",
    "classify",
    "parse_header_option",
    "parse_status",
    "parse_target",
    "run_probe",
]

DEFAULT_TIMEOUT = 5.0
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 16
MAX_HEAD_BYTES = 16 * 1024
ATTACKER_ORIGIN = "https://attacker.example"
EVIL_DOMAIN = "evil.example"
USER_AGENT = "wsguard-probe/1"
SECRET_HEADERS = frozenset({"cookie", "authorization", "proxy-authorization"})
# Headers the probe writes itself; letting --header replace them would break the battery.
RESERVED_HEADERS = frozenset(
    {
        "origin",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "content-length",
        "transfer-encoding",
    }
)
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Latin letters and the Cyrillic letters that render the same (UTS #39 confusables).
_HOMOGLYPHS = {"a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440", "c": "\u0441", "x": "\u0445", "i": "\u0456"}
CLOSE_FRAME_NORMAL = 1000


class ProbeError(ValueError):
    """A usage error: a URL, origin or header option the probe cannot use. Never a finding."""


# --- the target -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where the probe connects (only ever ``host``:``port`` from the URL) and what it trusts."""

    url: str
    secure: bool
    host: str  # as written in the URL, without brackets
    port: int
    path: str  # path and query, as sent on the request line
    host_header: str
    trusted: Origin

    @property
    def trusted_origin(self) -> str:
        """The trusted origin as a browser serialises it (default port omitted)."""
        return self.trusted.serialize()


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_target(url: str, origin: str | None = None) -> Target:
    """Check a ``ws://`` or ``wss://`` URL and derive the origin the target trusts.

    The trusted origin is the target's own (ws becomes http, wss https; same host and port)
    unless ``origin`` overrides it. Raises :class:`ProbeError` for anything the probe cannot use.
    """
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ProbeError("the URL contains whitespace or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ProbeError(f"the URL is not valid ({exc}).") from None
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise ProbeError(f"the URL must start with ws:// or wss://, not {parts.scheme or 'nothing'}.")
    if parts.username is not None or parts.password is not None:
        raise ProbeError("the URL must not contain userinfo; pass credentials with --cookie or --header.")
    if parts.fragment:
        raise ProbeError("the URL must not contain a #fragment.")
    host = parts.hostname or ""
    if not host or not host.isascii():
        raise ProbeError("the URL has no host, or a non-ASCII one; write it in punycode (xn--...).")
    secure = scheme == "wss"
    default_port = DEFAULT_PORTS[scheme]
    port = port or default_port
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host_header = _bracket(host) + ("" if port == default_port else f":{port}")
    if origin is None:
        derived = parse_origin(f"{'https' if secure else 'http'}://{host_header}")
        if not isinstance(derived, Origin):
            raise ProbeError(f"cannot derive an origin from the host {host!r}; pass --origin.")
        trusted = derived
    else:
        parsed = parse_origin(origin)
        if not isinstance(parsed, Origin) or parsed.port is None:
            raise ProbeError(f"--origin {origin!r} is not an origin; write it as https://host[:port].")
        trusted = parsed
    return Target(url=url, secure=secure, host=host, port=port, path=path, host_header=host_header, trusted=trusted)


def parse_header_option(text: str) -> tuple[str, str]:
    """``"Name: value"`` from ``--header``, refusing header injection and the headers the probe
    writes itself."""
    name, sep, value = text.partition(":")
    name = name.strip()
    value = value.strip()
    if not sep or not _TOKEN_RE.fullmatch(name):
        raise ProbeError("--header must be written as 'Name: value'.")
    if any(c in value for c in "\r\n\x00"):
        raise ProbeError(f"--header {name}: the value contains CR, LF or NUL.")
    if name.lower() in RESERVED_HEADERS:
        raise ProbeError(
            f"--header {name} is written by the probe itself"
            + ("; use --origin to say which origin is trusted." if name.lower() == "origin" else ".")
        )
    return name, value


# --- the battery ------------------------------------------------------------------------------


class Category(StrEnum):
    CONTROL = "control"
    MISSING = "missing"
    OPAQUE = "opaque"
    DUPLICATED = "duplicated"
    LIST = "list"
    SCHEME = "scheme"
    PORT = "port"
    LOOKALIKE = "look-alike"
    DOMAIN = "domain"
    IP = "ip-literal"
    EQUIVALENT = "equivalent"
    TRAILING_DOT = "trailing-dot"
    USERINFO = "userinfo"
    PATH = "path"
    CONTROL_CHARS = "whitespace/control"
    OVERLONG = "over-long"
    UNICODE = "unicode"
    ATTACKER = "attacker"


@dataclass(frozen=True, slots=True)
class Row:
    """One handshake of the battery. ``origins`` are the exact ``Origin`` header values sent, one
    header line each (empty: no ``Origin`` header). ``equivalent`` rows name the trusted origin
    itself in another spelling (RFC 6454 section 4), so an upgrade is not a finding."""

    name: str
    category: Category
    origins: tuple[bytes, ...]
    equivalent: bool = False

    @property
    def is_control(self) -> bool:
        return self.category is Category.CONTROL

    def header_lines(self) -> list[bytes]:
        return [b"Origin: " + value for value in self.origins]


def _with_port(scheme: str, host: str, port: int | None) -> str:
    if port is None or DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _homoglyph(host: str) -> str:
    """``host`` with its first confusable Latin letter replaced by a Cyrillic one, in punycode;
    hosts without such letters (IP literals) get a look-alike of ``localhost``."""
    labels = host.split(".")
    if host.startswith("[") or all(label.isdigit() for label in labels):
        labels = ["localhost"]
    for index, label in enumerate(labels):
        for position, char in enumerate(label):
            if char in _HOMOGLYPHS:
                spoof = label[:position] + _HOMOGLYPHS[char] + label[position + 1 :]
                labels[index] = "xn--" + spoof.encode("punycode").decode("ascii")
                return ".".join(labels)
    return "xn--80ak6aa92e." + host  # "apple" spelt in Cyrillic letters


def _unicode_host(host: str) -> str:
    """The same look-alike as :func:`_homoglyph`, left in Unicode (a server that does not decode
    punycode sees these bytes)."""
    labels = _homoglyph(host).split(".")
    return ".".join(
        label[4:].encode("ascii").decode("punycode") if label.startswith("xn--") else label for label in labels
    )


def build_battery(trusted: Origin) -> list[Row]:
    """The fixed battery of handshakes derived from the trusted origin. Pure; the first row is
    the control (the trusted origin itself). Rows whose header would repeat an earlier row's
    are dropped, so every row tests something different."""
    scheme, host, port = trusted.scheme, trusted.host, trusted.port
    default = DEFAULT_PORTS.get(scheme)
    origin = trusted.serialize()
    other_scheme = "http" if scheme == "https" else "https"
    is_ip = host.startswith("[") or host.replace(".", "").isdigit()
    labels = host.split(".")
    parent = ".".join(labels[1:]) if not is_ip and len(labels) > 1 else ""
    tld_only = not parent or is_public_suffix(parent)
    port_suffix = "" if port is None or port == default else f":{port}"
    other_port = (port or 0) + 1 if (port or 0) < 65535 else 1
    overlong_host = ".".join(["a" * 63] * 64) + "." + host  # ~4 KiB: past any sane origin length

    def o(host_: str, port_: int | None = port, scheme_: str = scheme) -> str:
        return _with_port(scheme_, host_, port_)

    spec: list[tuple[str, Category, tuple[str | bytes, ...], bool]] = [
        ("trusted origin", Category.CONTROL, (origin,), False),
        ("no Origin", Category.MISSING, (), False),
        ("null", Category.OPAQUE, ("null",), False),
        ("attacker", Category.ATTACKER, (ATTACKER_ORIGIN,), False),
        ("two Origins, trusted first", Category.DUPLICATED, (origin, ATTACKER_ORIGIN), False),
        ("two Origins, attacker first", Category.DUPLICATED, (ATTACKER_ORIGIN, origin), False),
        ("comma list, trusted first", Category.LIST, (f"{origin}, {ATTACKER_ORIGIN}",), False),
        ("comma list, attacker first", Category.LIST, (f"{ATTACKER_ORIGIN}, {origin}",), False),
        ("space list (RFC 6454 origin-list)", Category.LIST, (f"{origin} {ATTACKER_ORIGIN}",), False),
        ("other scheme", Category.SCHEME, (o(host, port if port != default else None, other_scheme),), False),
        ("other port", Category.PORT, (o(host, other_port),), False),
        ("default port", Category.PORT, (o(host, default),), False),
        ("suffix look-alike", Category.LOOKALIKE, (f"{origin}.{EVIL_DOMAIN}",), False),
        ("host suffix look-alike", Category.LOOKALIKE, (o(f"{host}.{EVIL_DOMAIN}"),), False),
        ("prefix look-alike", Category.LOOKALIKE, (o(f"evil{host}"),), False),
        ("dash look-alike", Category.LOOKALIKE, (f"{origin}-{EVIL_DOMAIN}",), False),
        ("subdomain", Category.DOMAIN, (o(f"evil.{host}"),), False),
    ]
    if not tld_only:
        spec += [
            ("sibling subdomain", Category.DOMAIN, (o(f"evil.{parent}"),), False),
            ("parent domain", Category.DOMAIN, (o(parent),), False),
        ]
    spec += [
        ("IPv4 loopback", Category.IP, (o("127.0.0.1"),), False),
        ("IPv6 loopback", Category.IP, (o("[::1]"),), False),
        ("localhost", Category.IP, (o("localhost"),), False),
        ("decimal IPv4", Category.IP, (o("2130706433"),), False),
        ("hex IPv4", Category.IP, (o("0x7f000001"),), False),
        ("uppercase", Category.EQUIVALENT, (origin.upper(),), True),
        ("mixed case host", Category.EQUIVALENT, (o(host.title()),), True),
    ]
    if port is not None and port == default:
        spec.append(("explicit default port", Category.EQUIVALENT, (f"{scheme}://{host}:{port}",), True))
    spec += [
        ("trailing dot", Category.TRAILING_DOT, (o(f"{host}."),), False),
        ("userinfo look-alike", Category.USERINFO, (f"{origin}@{EVIL_DOMAIN}",), False),
        ("userinfo", Category.USERINFO, (f"{scheme}://user@{host}{port_suffix}",), False),
        ("path suffix", Category.PATH, (f"{origin}/path",), False),
        ("trailing slash", Category.PATH, (f"{origin}/",), False),
        ("tab inside", Category.CONTROL_CHARS, (f"{origin}\t.{EVIL_DOMAIN}",), False),
        ("NUL byte", Category.CONTROL_CHARS, (f"{origin}\x00.{EVIL_DOMAIN}",), False),
        ("over-long origin", Category.OVERLONG, (o(overlong_host),), False),
        ("punycode look-alike", Category.UNICODE, (o(_homoglyph(host)),), False),
        ("raw UTF-8 look-alike", Category.UNICODE, (o(_unicode_host(host)).encode("utf-8"),), False),
    ]
    rows: list[Row] = []
    seen: set[tuple[bytes, ...]] = set()
    for name, category, values, equivalent in spec:
        encoded = tuple(v if isinstance(v, bytes) else v.encode("latin-1") for v in values)
        if encoded in seen:
            continue
        seen.add(encoded)
        same = category is not Category.CONTROL and _same_origin(encoded, trusted)
        rows.append(Row(name, category, encoded, equivalent or same))
    return rows


def _same_origin(values: tuple[bytes, ...], trusted: Origin) -> bool:
    """A single, well-formed header value that parses to the trusted origin (RFC 6454 section 4:
    scheme and host compared case-insensitively, an omitted port is the default port)."""
    return len(values) == 1 and parse_origin(values[0]) == trusted


# --- sending ----------------------------------------------------------------------------------


class Outcome(StrEnum):
    UPGRADED = "upgraded"
    FORBIDDEN = "forbidden"
    OTHER_STATUS = "other-status"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection-error"


@dataclass(frozen=True, slots=True)
class Response:
    """What came back: a status code (None when no status line was read) and a short, printable
    description. Response headers are not kept (they may carry Set-Cookie)."""

    outcome: Outcome
    status: int | None = None
    detail: str = ""


def parse_status(head: bytes) -> int | None:
    """The status code of an ``HTTP/1.x NNN reason`` status line, None if there is none."""
    line = head.split(b"\r\n", 1)[0]
    match = re.fullmatch(rb"HTTP/1\.[01] ([1-5][0-9]{2})(?: .*)?", line)
    return int(match[1]) if match else None


def classify(head: bytes) -> Response:
    """Classify a response head. 101 is an upgrade; anything unparsable is an "other status"."""
    status = parse_status(head)
    line = printable(head.split(b"\r\n", 1)[0], limit=72)
    if status == 101:
        return Response(Outcome.UPGRADED, status, line)
    if status == 403:
        return Response(Outcome.FORBIDDEN, status, line)
    if status is None:
        return Response(Outcome.OTHER_STATUS, None, f"no HTTP status line: {line!r}" if head else "empty response")
    return Response(Outcome.OTHER_STATUS, status, line)


def printable(value: bytes | str, limit: int = 80) -> str:
    """Escape non-printable bytes and shorten long values, for tables and logs."""
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "replace")
    text = "".join(chr(b) if 32 <= b < 127 and b != 0x5C else f"\\x{b:02x}" for b in raw)
    if len(text) > limit:
        text = f"{text[: limit - 20]}...({len(raw)} bytes)"
    return text


def build_request(target: Target, row: Row, extra_headers: Sequence[tuple[str, str]], cookie: str | None) -> bytes:
    """The exact bytes of one upgrade request."""
    key = base64.b64encode(os.urandom(16))
    host_header = next((v for n, v in extra_headers if n.lower() == "host"), target.host_header)
    lines = [
        f"GET {target.path} HTTP/1.1".encode("ascii"),
        b"Host: " + host_header.encode("latin-1"),
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + key,
        b"Sec-WebSocket-Version: 13",
        b"User-Agent: " + USER_AGENT.encode("ascii"),
        *row.header_lines(),
    ]
    lines += [f"{n}: {v}".encode("latin-1") for n, v in extra_headers if n.lower() != "host"]
    if cookie:
        lines.append(b"Cookie: " + cookie.encode("latin-1"))
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _close_frame() -> bytes:
    """A masked client close frame (RFC 6455 section 5.5.1) with status 1000."""
    mask = os.urandom(4)
    payload = struct.pack("!H", CLOSE_FRAME_NORMAL)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x88, 0x80 | len(payload)]) + mask + masked


async def send_handshake(target: Target, request: bytes, *, request_timeout: float, verify: bool = True) -> Response:
    """Send one request to the URL's own host and port and read the response head. Never raises
    for network trouble: a timeout or an error is a :class:`Response` too."""
    context: ssl.SSLContext | None = None
    if target.secure:
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(request_timeout):
            reader, writer = await asyncio.open_connection(
                target.host, target.port, ssl=context, server_hostname=target.host if context else None
            )
            writer.write(request)
            await writer.drain()
            head = b""
            while b"\r\n\r\n" not in head and len(head) < MAX_HEAD_BYTES:
                chunk = await reader.read(4096)
                if not chunk:
                    break
                head += chunk
        response = classify(head.split(b"\r\n\r\n", 1)[0])
        if response.outcome is Outcome.UPGRADED:
            writer.write(_close_frame())
        return response
    except TimeoutError:
        return Response(Outcome.TIMEOUT, None, f"no response within {request_timeout:g}s")
    except (OSError, ssl.SSLError, EOFError) as exc:
        return Response(Outcome.CONNECTION_ERROR, None, f"{type(exc).__name__}: {printable(str(exc), 60)}")
    finally:
        if writer is not None:
            await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
    except (OSError, TimeoutError, ssl.SSLError):
        pass


# --- verdicts ---------------------------------------------------------------------------------


class Verdict(StrEnum):
    SAFE = "SAFE"
    VULNERABLE = "VULNERABLE"
    SAME_ORIGIN = "OK (same origin)"
    CONTROL_UPGRADED = "control: upgraded"
    CONTROL_REFUSED = "control: NOT upgraded"


class Overall(IntEnum):
    """The overall result; the value is the command's exit status."""

    SAFE = 0
    ERROR = 1
    VULNERABLE = 2
    INCONCLUSIVE = 3


def verdict(row: Row, response: Response) -> Verdict:
    upgraded = response.outcome is Outcome.UPGRADED
    if row.is_control:
        return Verdict.CONTROL_UPGRADED if upgraded else Verdict.CONTROL_REFUSED
    if not upgraded:
        return Verdict.SAFE
    return Verdict.SAME_ORIGIN if row.equivalent else Verdict.VULNERABLE


@dataclass(frozen=True, slots=True)
class RowResult:
    row: Row
    response: Response
    verdict: Verdict


@dataclass(frozen=True)
class ProbeReport:
    target: Target
    results: tuple[RowResult, ...]
    cookie: bool = False
    extra_header_names: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    overall: Overall = field(init=False)
    reason: str = field(init=False)

    def __post_init__(self) -> None:
        overall, reason = summarise(self.results, cookie=self.cookie)
        object.__setattr__(self, "overall", overall)
        object.__setattr__(self, "reason", reason)

    @property
    def vulnerable(self) -> list[RowResult]:
        return [r for r in self.results if r.verdict is Verdict.VULNERABLE]


def summarise(results: Sequence[RowResult], *, cookie: bool) -> tuple[Overall, str]:
    """The overall verdict and a one-line reason."""
    if results and all(r.response.outcome is Outcome.CONNECTION_ERROR for r in results):
        return Overall.ERROR, f"could not connect: {results[0].response.detail}"
    vulnerable = [r.row.name for r in results if r.verdict is Verdict.VULNERABLE]
    if vulnerable:
        return Overall.VULNERABLE, f"{len(vulnerable)} forged handshake(s) were upgraded: {'; '.join(vulnerable)}"
    control = next((r for r in results if r.row.is_control), None)
    if control is None or control.verdict is not Verdict.CONTROL_UPGRADED:
        got = control.response.detail if control is not None else "not sent"
        hint = (
            "maybe authentication is required: pass --cookie or --header"
            if not cookie
            else "check the cookie, the path and --origin"
        )
        return Overall.INCONCLUSIVE, f"the trusted origin itself was not upgraded ({got}); {hint}"
    return Overall.SAFE, "only the trusted origin (and its equivalent spellings) was upgraded"


async def run_probe(
    target: Target,
    *,
    cookie: str | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
    request_timeout: float = DEFAULT_TIMEOUT,
    concurrency: int = DEFAULT_CONCURRENCY,
    verify: bool = True,
) -> ProbeReport:
    """Send the battery once, control row first (so a rate limiter cannot hide it), the rest at
    most ``concurrency`` at a time."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ProbeError(f"--concurrency must be from 1 to {MAX_CONCURRENCY}.")
    if not 0 < request_timeout <= 60:
        raise ProbeError("--timeout must be more than 0 and at most 60 seconds.")
    if cookie is not None and any(c in cookie for c in "\r\n\x00"):
        raise ProbeError("--cookie contains CR, LF or NUL.")
    if cookie is not None and any(n.lower() == "cookie" for n, _ in extra_headers):
        raise ProbeError("give the cookie either with --cookie or with --header 'Cookie: ...', not both.")
    rows = build_battery(target.trusted)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(row: Row) -> RowResult:
        async with semaphore:
            request = build_request(target, row, extra_headers, cookie)
            response = await send_handshake(target, request, request_timeout=request_timeout, verify=verify)
        return RowResult(row, response, verdict(row, response))

    first = await one(rows[0])
    rest = await asyncio.gather(*(one(row) for row in rows[1:]))
    return ProbeReport(
        target=target,
        results=(first, *rest),
        cookie=bool(cookie) or any(n.lower() == "cookie" for n, _ in extra_headers),
        extra_header_names=tuple(n for n, _ in extra_headers),
        timeout=request_timeout,
    )


# --- output -----------------------------------------------------------------------------------


def sent_text(row: Row) -> str:
    if not row.origins:
        return "(no Origin header)"
    return " + ".join(f"Origin: {printable(v, 64)}" for v in row.origins)


def received_text(response: Response) -> str:
    if response.outcome in (Outcome.TIMEOUT, Outcome.CONNECTION_ERROR):
        return f"{response.outcome}: {response.detail}"
    return response.detail


def render_table(report: ProbeReport, extra_headers: Sequence[tuple[str, str]] = ()) -> list[str]:
    """The human-readable report: a header block, one line per row, the overall line."""
    target = report.target
    lines = [
        f"target:   {printable(target.url, 200)}",
        f"connects: {_bracket(target.host)}:{target.port} only ({'TLS' if target.secure else 'plain TCP'})",
        f"trusted:  {target.trusted_origin}",
        f"cookie:   {'yes' if report.cookie else 'no'}",
    ]
    if extra_headers:
        shown = [
            f"{n}: <redacted>" if n.lower() in SECRET_HEADERS else f"{n}: {printable(v, 60)}" for n, v in extra_headers
        ]
        lines.append(f"headers:  {'; '.join(shown)}")
    table = [("#", "row", "category", "sent", "came back", "verdict")]
    for index, result in enumerate(report.results, 1):
        table.append(
            (
                str(index),
                result.row.name,
                str(result.row.category),
                sent_text(result.row),
                received_text(result.response),
                str(result.verdict),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines.append("")
    for row in table:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if row is table[0]:
            lines.append("  ".join("-" * width for width in widths))
    lines.append("")
    lines.append(f"overall: {report.overall.name} - {report.reason}")
    return lines


def report_json(report: ProbeReport) -> dict[str, object]:
    """The ``--json`` document. Carries no cookie or credential values."""
    target = report.target
    return {
        "target": target.url,
        "connect": {"host": target.host, "port": target.port, "tls": target.secure},
        "trusted_origin": target.trusted_origin,
        "cookie": report.cookie,
        "extra_headers": list(report.extra_header_names),
        "timeout": report.timeout,
        "rows": [
            {
                "name": r.row.name,
                "category": str(r.row.category),
                "control": r.row.is_control,
                "equivalent": r.row.equivalent,
                "sent": [printable(line, 10_000) for line in r.row.header_lines()],
                "outcome": str(r.response.outcome),
                "status": r.response.status,
                "detail": r.response.detail,
                "verdict": str(r.verdict),
            }
            for r in report.results
        ],
        "overall": report.overall.name,
        "reason": report.reason,
        "exit_status": int(report.overall),
    }
