"""parse_origin and parse_host_header: tables of what a browser sends and of every bypass class."""

from __future__ import annotations

import pytest

from wsguard.origins import (
    MAX_ORIGIN_LENGTH,
    Origin,
    Reason,
    parse_host_header,
    parse_origin,
)

MALFORMED = Reason.ORIGIN_MALFORMED
OPAQUE = Reason.ORIGIN_OPAQUE


# --- well-formed origins normalise to (scheme, host, port) --------------------------------------

WELL_FORMED = [
    ("https://example.com", ("https", "example.com", 443)),
    ("https://example.com:443", ("https", "example.com", 443)),
    ("http://example.com", ("http", "example.com", 80)),
    ("http://example.com:80", ("http", "example.com", 80)),
    ("http://example.com:443", ("http", "example.com", 443)),
    ("https://example.com:80", ("https", "example.com", 80)),
    ("https://example.com:8443", ("https", "example.com", 8443)),
    ("https://example.com:1", ("https", "example.com", 1)),
    ("https://example.com:65535", ("https", "example.com", 65535)),
    ("https://app.example.com", ("https", "app.example.com", 443)),
    ("https://a.b.c.d.example.com", ("https", "a.b.c.d.example.com", 443)),
    ("https://localhost", ("https", "localhost", 443)),
    ("http://localhost:8000", ("http", "localhost", 8000)),
    ("https://my-app.example.com", ("https", "my-app.example.com", 443)),
    ("https://a1.example.com", ("https", "a1.example.com", 443)),
    ("https://1a.example.com", ("https", "1a.example.com", 443)),
    ("https://123.example.com", ("https", "123.example.com", 443)),
    ("https://_dmarc.example.com", ("https", "_dmarc.example.com", 443)),
    ("https://xn--bcher-kva.de", ("https", "xn--bcher-kva.de", 443)),
    ("https://xn--n3h.example", ("https", "xn--n3h.example", 443)),
    ("wss://example.com", ("wss", "example.com", 443)),
    ("ws://example.com", ("ws", "example.com", 80)),
    ("chrome-extension://abcdefghijklmnop", ("chrome-extension", "abcdefghijklmnop", None)),
    ("moz-extension://abc-def", ("moz-extension", "abc-def", None)),
    ("ftp://example.com", ("ftp", "example.com", None)),
    ("ftp://example.com:21", ("ftp", "example.com", 21)),
    # Case variants normalise: scheme and host are case-insensitive.
    ("HTTPS://EXAMPLE.COM", ("https", "example.com", 443)),
    ("Https://Example.Com", ("https", "example.com", 443)),
    ("https://APP.Example.com:8443", ("https", "app.example.com", 8443)),
    ("HTTP://LOCALHOST:8000", ("http", "localhost", 8000)),
    ("https://XN--BCHER-KVA.DE", ("https", "xn--bcher-kva.de", 443)),
    # IPv4: only the canonical dotted quad.
    ("http://127.0.0.1", ("http", "127.0.0.1", 80)),
    ("http://127.0.0.1:8000", ("http", "127.0.0.1", 8000)),
    ("https://192.168.1.10", ("https", "192.168.1.10", 443)),
    ("https://0.0.0.0", ("https", "0.0.0.0", 443)),
    ("https://255.255.255.255", ("https", "255.255.255.255", 443)),
    # IPv6: bracketed, normalised to the compressed lower-case form browsers serialise.
    ("http://[::1]", ("http", "[::1]", 80)),
    ("http://[::1]:8000", ("http", "[::1]", 8000)),
    ("https://[2001:db8::1]", ("https", "[2001:db8::1]", 443)),
    ("https://[2001:DB8::1]", ("https", "[2001:db8::1]", 443)),
    ("https://[2001:0db8:0000:0000:0000:0000:0000:0001]", ("https", "[2001:db8::1]", 443)),
    ("https://[0:0:0:0:0:0:0:1]:443", ("https", "[::1]", 443)),
    ("https://[::ffff:1.2.3.4]", ("https", "[::ffff:102:304]", 443)),
    ("https://[::ffff:102:304]", ("https", "[::ffff:102:304]", 443)),
]


@pytest.mark.parametrize("raw, expected", WELL_FORMED)
def test_well_formed_origin_normalises(raw, expected):
    assert parse_origin(raw) == Origin(*expected)


@pytest.mark.parametrize("raw, expected", WELL_FORMED)
def test_bytes_and_str_parse_the_same(raw, expected):
    assert parse_origin(raw.encode("ascii")) == Origin(*expected)


@pytest.mark.parametrize(
    "raw, serialised",
    [
        ("https://example.com:443", "https://example.com"),
        ("http://example.com:80", "http://example.com"),
        ("https://Example.COM:8443", "https://example.com:8443"),
        ("http://example.com:443", "http://example.com:443"),
        ("ftp://example.com", "ftp://example.com"),
        ("ftp://example.com:21", "ftp://example.com:21"),
        ("https://[0:0::1]:443", "https://[::1]"),
        ("wss://example.com:443", "wss://example.com"),
    ],
)
def test_serialisation_drops_the_default_port_and_normalises_case(raw, serialised):
    origin = parse_origin(raw)
    assert isinstance(origin, Origin)
    assert origin.serialize() == serialised
    assert str(origin) == serialised
    assert parse_origin(serialised) == origin


# --- opaque origins -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "null",
        b"null",
        "file://example.com",
        "file://localhost",
        "FILE://example.com",
        "data://example.com",
        "about://blank",
        "blob://example.com",
        "javascript://example.com",
    ],
)
def test_opaque_origins_are_never_a_tuple_origin(raw):
    assert parse_origin(raw) is OPAQUE


# --- every bypass class is malformed ------------------------------------------------------------

BYPASS = {
    # Two origins, or a list.
    "two origins comma": "https://a.example.com,https://b.example.com",
    "two origins comma space": "https://a.example.com, https://b.example.com",
    "two origins space": "https://a.example.com https://b.example.com",
    "trailing comma": "https://a.example.com,",
    "leading comma": ",https://a.example.com",
    "null then origin": "null, https://a.example.com",
    "origin then null": "https://a.example.com null",
    # Whitespace and control characters anywhere.
    "leading space": " https://a.example.com",
    "trailing space": "https://a.example.com ",
    "inner space": "https://a.example .com",
    "tab inside": "https://a.example.com\t",
    "tab in host": "https://a.exa\tmple.com",
    "CR": "https://a.example.com\r",
    "LF": "https://a.example.com\n",
    "CRLF header injection": "https://a.example.com\r\nX-Evil: 1",
    "NUL end": "https://a.example.com\x00",
    "NUL middle": "https://a.example.com\x00.evil.com",
    "NUL in scheme": "ht\x00tps://a.example.com",
    "DEL": "https://a.example.com\x7f",
    "DEL in host": "https://a.exam\x7fple.com",
    "vertical tab": "https://a.example.com\x0b",
    "form feed": "https://a.example.com\x0c",
    "ESC": "https://a.example.com\x1b",
    "unit separator": "https://a.example.com\x1f",
    # Non-ASCII (a browser sends punycode; anything else is forged).
    "latin-1 byte": b"https://b\xfccher.de",
    "utf-8 bytes": "https://bücher.de".encode(),
    "unicode str": "https://bücher.de",
    "fullwidth dot": "https://example\uff0ecom",
    "ideographic dot": "https://example\u3002com",
    "cyrillic a homograph": "https://\u0430pple.com",
    "zero-width joiner": "https://exa\u200dmple.com",
    "right-to-left override": "https://\u202eexample.com",
    "C1 control": "https://example.com\x85",
    "non-breaking space": "https://example.com\xa0",
    "lone surrogate": "https://example.com\ud800",
    "high byte": b"https://example.com\xff",
    # Path, query, fragment.
    "trailing slash": "https://a.example.com/",
    "path": "https://a.example.com/chat",
    "path after port": "https://a.example.com:443/",
    "dot path": "https://a.example.com/.",
    "query": "https://a.example.com?x=1",
    "empty query": "https://a.example.com?",
    "fragment": "https://a.example.com#x",
    "empty fragment": "https://a.example.com#",
    "backslash": "https://a.example.com\\",
    "backslash host": "https://a.example.com\\@evil.com",
    "semicolon": "https://a.example.com;",
    # Userinfo.
    "userinfo": "https://user@a.example.com",
    "userinfo password": "https://user:pw@a.example.com",
    "userinfo trick": "https://a.example.com@evil.com",
    "userinfo trick port": "https://a.example.com:443@evil.com",
    "empty userinfo": "https://@a.example.com",
    # Ports.
    "port 0": "https://a.example.com:0",
    "port 65536": "https://a.example.com:65536",
    "port 99999": "https://a.example.com:99999",
    "port 100000": "https://a.example.com:100000",
    "port negative": "https://a.example.com:-1",
    "port plus": "https://a.example.com:+443",
    "port leading zero": "https://a.example.com:0443",
    "port leading zeros": "https://a.example.com:00443",
    "port 00": "https://a.example.com:00",
    "port empty": "https://a.example.com:",
    "port letters": "https://a.example.com:https",
    "port hex": "https://a.example.com:0x1bb",
    "port star": "https://a.example.com:*",
    "port space": "https://a.example.com: 443",
    "port twice": "https://a.example.com:443:443",
    "port decimal": "https://a.example.com:443.0",
    "port unicode digits": "https://a.example.com:\u0664\u0664\u0663",
    # Over-long values.
    "over MAX_ORIGIN_LENGTH": "https://" + "a" * MAX_ORIGIN_LENGTH + ".com",
    "host over 253": "https://" + ".".join(["a" * 60] * 5),
    "label over 63": "https://" + "a" * 64 + ".example.com",
    "megabyte": "https://" + "a." * 500_000 + "com",
    "megabyte bytes": b"https://" + b"a" * 1_000_000,
    # Trailing and stray dots, empty labels, hyphens.
    "trailing dot": "https://a.example.com.",
    "trailing dot port": "https://a.example.com.:443",
    "leading dot": "https://.a.example.com",
    "double dot": "https://a..example.com",
    "only dot": "https://.",
    "label leading hyphen": "https://-a.example.com",
    "label trailing hyphen": "https://a-.example.com",
    # Scheme shapes.
    "no scheme": "a.example.com",
    "scheme-relative": "//a.example.com",
    "scheme colon only": "https:a.example.com",
    "scheme one slash": "https:/a.example.com",
    "scheme three slashes": "https:///a.example.com",
    "scheme starts with digit": "1https://a.example.com",
    "empty scheme": "://a.example.com",
    "scheme with space": "ht tps://a.example.com",
    "scheme too long": "h" * 40 + "://a.example.com",
    "empty host": "https://",
    "empty host port": "https://:443",
    # IP literals in non-canonical forms (fail closed: a browser would canonicalise them).
    "ipv4 short": "http://127.1",
    "ipv4 three parts": "http://127.0.1",
    "ipv4 integer": "http://2130706433",
    "ipv4 octal": "http://0177.0.0.1",
    "ipv4 leading zero": "http://127.0.0.01",
    "ipv4 hex": "http://0x7f.0.0.1",
    "ipv4 hex whole": "http://0x7f000001",
    "ipv4 hex upper": "http://0X7F.0.0.1",
    "ipv4 five parts": "http://1.2.3.4.5",
    "ipv4 out of range": "http://256.0.0.1",
    "ipv4 trailing dot": "http://127.0.0.1.",
    "numeric last label": "http://example.123",
    "hex last label": "http://example.0x1",
    "ipv6 unbracketed": "http://::1",
    "ipv6 unbracketed port": "http://::1:80",
    "ipv6 zone id": "http://[fe80::1%25eth0]",
    "ipv6 zone id raw": "http://[fe80::1%eth0]",
    "ipv6 empty": "http://[]",
    "ipv6 bad": "http://[::g]",
    "ipv6 too many groups": "http://[1:2:3:4:5:6:7:8:9]",
    "ipv6 unclosed": "http://[::1",
    "ipv6 unopened": "http://::1]",
    "ipv6 garbage after": "http://[::1]x",
    "ipv6 bad port": "http://[::1]:0",
    "ipv4 in brackets": "http://[127.0.0.1]",
    # Odd shapes.
    "empty": "",
    "only scheme": "https",
    "star": "*",
    "null with port": "null:443",
    "NULL upper": "NULL",
    "null with space": "null ",
    "quoted": '"https://a.example.com"',
    "angle brackets": "<https://a.example.com>",
    "percent-encoded host": "https://a%2eexample.com",
    "percent": "https://a.example.com%00",
}


@pytest.mark.parametrize("raw", list(BYPASS.values()), ids=list(BYPASS))
def test_bypass_attempts_are_malformed(raw):
    assert parse_origin(raw) is MALFORMED


@pytest.mark.parametrize("raw", [v for v in BYPASS.values() if isinstance(v, str) and v.isascii()])
def test_bypass_attempts_are_malformed_as_bytes_too(raw):
    assert parse_origin(raw.encode("ascii")) is MALFORMED


@pytest.mark.parametrize("raw", [None, 42, 4.2, ["https://a.example.com"], ("https://a.example.com",), object()])
def test_values_of_other_types_are_malformed_not_an_exception(raw):
    assert parse_origin(raw) is MALFORMED  # type: ignore[arg-type]


def test_longest_legitimate_origin_fits_under_the_length_limit():
    host = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(host) == 253
    longest = f"https://{host}:65535"
    assert len(longest) <= MAX_ORIGIN_LENGTH
    assert parse_origin(longest) == Origin("https", host, 65535)


def test_one_octet_over_the_host_limit_is_malformed():
    host = ".".join(["a" * 63] * 3 + ["b" * 62])
    assert len(host) == 254
    assert parse_origin(f"https://{host}") is MALFORMED


@pytest.mark.parametrize(
    "raw",
    [
        "https://" + "a" * 63 + ".example.com",
        "https://" + ".".join(["a" * 63] * 3) + ".com",
    ],
)
def test_labels_at_63_octets_are_accepted(raw):
    assert isinstance(parse_origin(raw), Origin)


# --- look-alikes stay different origins ---------------------------------------------------------


@pytest.mark.parametrize(
    "raw, host",
    [
        ("https://app.example.com.evil.com", "app.example.com.evil.com"),
        ("https://evilexample.com", "evilexample.com"),
        ("https://example.com.evil", "example.com.evil"),
        ("https://app-example.com", "app-example.com"),
        ("https://exampIe.com", "exampie.com"),
        ("https://xn--pple-43d.com", "xn--pple-43d.com"),
    ],
)
def test_look_alikes_parse_to_their_own_host(raw, host):
    origin = parse_origin(raw)
    assert isinstance(origin, Origin)
    assert origin.host == host


# --- Host header --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, scheme, expected",
    [
        ("example.com", "https", ("example.com", 443)),
        ("example.com", "http", ("example.com", 80)),
        ("example.com:8000", "http", ("example.com", 8000)),
        ("EXAMPLE.com:443", "https", ("example.com", 443)),
        (b"example.com", "https", ("example.com", 443)),
        ("127.0.0.1:8000", "http", ("127.0.0.1", 8000)),
        ("[::1]:8000", "http", ("[::1]", 8000)),
        ("[::1]", "https", ("[::1]", 443)),
        ("localhost", "http", ("localhost", 80)),
    ],
)
def test_host_header_parses(raw, scheme, expected):
    assert parse_host_header(raw, scheme) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        b"",
        " example.com",
        "example.com ",
        "example.com/",
        "example.com/path",
        "user@example.com",
        "example.com:0",
        "example.com:65536",
        "example.com:",
        "example.com.",
        "example.com,evil.com",
        "example.com\r\nx: y",
        "example.com\x00",
        b"ex\xffample.com",
        "bücher.de",
        "127.1",
        "0x7f.0.0.1",
        "::1",
        "[fe80::1%eth0]",
        "https://example.com",
        "a" * 400,
    ],
)
def test_host_header_malformed_is_none(raw):
    assert parse_host_header(raw, "https") is None


# --- DESIGN.md's threat table, row by row -------------------------------------------------------


def _snapshot(patterns, *, allowed_hosts=("app.example.com",), same_origin=True, missing_origin="deny"):
    from wsguard.origins import OriginMatcher
    from wsguard.policy import PolicySnapshot

    return PolicySnapshot(
        matcher=OriginMatcher.compile(patterns),
        same_origin=same_origin,
        missing_origin=missing_origin,
        report_only=False,
        allowed_hosts=tuple(allowed_hosts),
        proxy_ssl_header=None,
        proxy_ssl_value=None,
        use_forwarded_host=False,
    )


def _facts(origins, host=b"app.example.com", secure=True, path="/ws/chat/"):
    from wsguard.policy import HandshakeFacts

    return HandshakeFacts(
        origins=tuple(origins),
        hosts=(host,) if host is not None else (),
        forwarded_hosts=(),
        proxy_ssl_values=(),
        connection_secure=secure,
        path=path,
    )


THREATS = [
    # (row, patterns, Origin headers, Host header, expected reason or None for allowed)
    ("legitimate page", ["https://app.example.com"], [b"https://app.example.com"], b"app.example.com", None),
    (
        "CSWSH foreign page",
        ["https://app.example.com"],
        [b"https://evil.example"],
        b"app.example.com",
        Reason.ORIGIN_UNTRUSTED,
    ),
    (
        "sibling origin: other port",
        ["https://app.example.com"],
        [b"https://app.example.com:8443"],
        b"app.example.com",
        Reason.ORIGIN_UNTRUSTED,
    ),
    (
        "sibling origin: other subdomain",
        ["https://app.example.com"],
        [b"https://blog.example.com"],
        b"app.example.com",
        Reason.ORIGIN_UNTRUSTED,
    ),
    (
        "sibling origin: http on the same host",
        ["https://app.example.com"],
        [b"http://app.example.com"],
        b"app.example.com",
        Reason.ORIGIN_UNTRUSTED,
    ),
    (
        "sibling origin: apex under a wildcard",
        ["https://*.example.com"],
        [b"https://example.com"],
        b"app.example.com",
        Reason.ORIGIN_UNTRUSTED,
    ),
    (
        "sibling origin: subdomain under a wildcard, asked for",
        ["https://*.example.com"],
        [b"https://blog.example.com"],
        b"app.example.com",
        None,
    ),
    (
        "DNS rebinding: Host and Origin agree on the attacker's name",
        ["https://app.example.com"],
        [b"https://rebind.attacker.example"],
        b"rebind.attacker.example",
        Reason.HOST_UNTRUSTED,
    ),
    (
        "DNS rebinding with an IP Host",
        ["https://app.example.com"],
        [b"https://203.0.113.9"],
        b"203.0.113.9",
        Reason.HOST_UNTRUSTED,
    ),
    ("raw client: no Origin", ["https://app.example.com"], [], b"app.example.com", Reason.ORIGIN_MISSING),
    (
        "anyone: duplicated Origin",
        ["https://app.example.com"],
        [b"https://app.example.com", b"https://app.example.com"],
        b"app.example.com",
        Reason.ORIGIN_MALFORMED,
    ),
    (
        "anyone: two origins in one header",
        ["https://app.example.com"],
        [b"https://app.example.com, https://evil.example"],
        b"app.example.com",
        Reason.ORIGIN_MALFORMED,
    ),
    (
        "anyone: oversized Origin",
        ["https://app.example.com"],
        [b"https://app.example.com" + b"a" * 10_000],
        b"app.example.com",
        Reason.ORIGIN_MALFORMED,
    ),
    ("anyone: opaque origin", ["https://app.example.com"], [b"null"], b"app.example.com", Reason.ORIGIN_OPAQUE),
    ("anyone: missing Host", ["https://app.example.com"], [b"https://app.example.com"], None, Reason.HOST_UNTRUSTED),
    (
        "anyone: malformed Host",
        ["https://app.example.com"],
        [b"https://app.example.com"],
        b"app.example.com/evil",
        Reason.HOST_UNTRUSTED,
    ),
]


@pytest.mark.parametrize(
    "patterns, origins, host, reason", [row[1:] for row in THREATS], ids=[row[0] for row in THREATS]
)
def test_threat_table_rows(patterns, origins, host, reason):
    from wsguard.policy import evaluate

    decision = evaluate(_facts(origins, host=host), _snapshot(patterns, same_origin=False))
    assert decision.reason == reason
    assert decision.allowed is (reason is None)


def test_dns_rebinding_is_denied_even_though_origin_equals_host():
    from wsguard.policy import evaluate

    facts = _facts([b"https://rebind.attacker.example"], host=b"rebind.attacker.example")
    assert evaluate(facts, _snapshot([], same_origin=True)).reason is Reason.HOST_UNTRUSTED
    # The same shape on a Host that is allowed is same-origin, which is what makes the Host check load-bearing.
    allowed = _snapshot([], same_origin=True, allowed_hosts=("rebind.attacker.example",))
    assert evaluate(facts, allowed).allowed


def test_duplicated_host_header_is_host_untrusted():
    from wsguard.policy import HandshakeFacts, evaluate

    facts = HandshakeFacts(
        origins=(b"https://app.example.com",),
        hosts=(b"app.example.com", b"app.example.com"),
        forwarded_hosts=(),
        proxy_ssl_values=(),
        connection_secure=True,
        path="/",
    )
    assert evaluate(facts, _snapshot(["https://app.example.com"])).reason is Reason.HOST_UNTRUSTED
