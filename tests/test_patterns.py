"""parse_pattern: the whole grammar of trusted-origin patterns, and its errors with hints."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from wsguard import conf
from wsguard.origins import ANY_PORT, Pattern, PatternError, is_public_suffix, parse_pattern

# --- accepted patterns and what they compile to -------------------------------------------------

ACCEPTED = [
    # text, (canonical text, scheme, host, port, wildcard)
    ("https://example.com", ("https://example.com", "https", "example.com", 443, False)),
    ("https://example.com:443", ("https://example.com", "https", "example.com", 443, False)),
    ("http://example.com", ("http://example.com", "http", "example.com", 80, False)),
    ("http://example.com:80", ("http://example.com", "http", "example.com", 80, False)),
    ("http://example.com:443", ("http://example.com:443", "http", "example.com", 443, False)),
    ("https://example.com:80", ("https://example.com:80", "https", "example.com", 80, False)),
    ("https://example.com:8443", ("https://example.com:8443", "https", "example.com", 8443, False)),
    ("https://example.com:1", ("https://example.com:1", "https", "example.com", 1, False)),
    ("https://example.com:65535", ("https://example.com:65535", "https", "example.com", 65535, False)),
    ("https://example.com:*", ("https://example.com:*", "https", "example.com", ANY_PORT, False)),
    ("http://localhost:*", ("http://localhost:*", "http", "localhost", ANY_PORT, False)),
    ("http://localhost:8000", ("http://localhost:8000", "http", "localhost", 8000, False)),
    ("https://app.example.com", ("https://app.example.com", "https", "app.example.com", 443, False)),
    ("https://a.b.c.example.com", ("https://a.b.c.example.com", "https", "a.b.c.example.com", 443, False)),
    ("https://*.example.com", ("https://*.example.com", "https", "example.com", 443, True)),
    ("https://*.example.com:443", ("https://*.example.com", "https", "example.com", 443, True)),
    ("https://*.example.com:8443", ("https://*.example.com:8443", "https", "example.com", 8443, True)),
    ("https://*.example.com:*", ("https://*.example.com:*", "https", "example.com", ANY_PORT, True)),
    ("https://*.app.example.com", ("https://*.app.example.com", "https", "app.example.com", 443, True)),
    ("https://*.example.co.uk", ("https://*.example.co.uk", "https", "example.co.uk", 443, True)),
    ("https://*.myapp.github.io", ("https://*.myapp.github.io", "https", "myapp.github.io", 443, True)),
    ("https://*.myapp.herokuapp.com", ("https://*.myapp.herokuapp.com", "https", "myapp.herokuapp.com", 443, True)),
    ("https://myapp.github.io", ("https://myapp.github.io", "https", "myapp.github.io", 443, False)),
    ("https://github.io", ("https://github.io", "https", "github.io", 443, False)),
    ("wss://example.com", ("wss://example.com", "wss", "example.com", 443, False)),
    ("ftp://example.com", ("ftp://example.com", "ftp", "example.com", None, False)),
    ("chrome-extension://abcdefgh", ("chrome-extension://abcdefgh", "chrome-extension", "abcdefgh", None, False)),
    # Case normalises.
    ("HTTPS://EXAMPLE.COM", ("https://example.com", "https", "example.com", 443, False)),
    ("Https://App.Example.Com:8443", ("https://app.example.com:8443", "https", "app.example.com", 8443, False)),
    ("https://*.EXAMPLE.com", ("https://*.example.com", "https", "example.com", 443, True)),
    # Unicode hosts are stored as punycode.
    ("https://bücher.de", ("https://xn--bcher-kva.de", "https", "xn--bcher-kva.de", 443, False)),
    ("https://BÜCHER.de", ("https://xn--bcher-kva.de", "https", "xn--bcher-kva.de", 443, False)),
    ("https://*.bücher.de", ("https://*.xn--bcher-kva.de", "https", "xn--bcher-kva.de", 443, True)),
    ("https://xn--bcher-kva.de", ("https://xn--bcher-kva.de", "https", "xn--bcher-kva.de", 443, False)),
    ("https://münchen.example", ("https://xn--mnchen-3ya.example", "https", "xn--mnchen-3ya.example", 443, False)),
    # A symbol is not valid IDNA2008 (refused below), but its punycode, typed as ASCII, is a name.
    ("https://xn--n3h.example.com", ("https://xn--n3h.example.com", "https", "xn--n3h.example.com", 443, False)),
    ("https://例え.jp", ("https://xn--r8jz45g.jp", "https", "xn--r8jz45g.jp", 443, False)),
    ("https://straße.de", ("https://xn--strae-oqa.de", "https", "xn--strae-oqa.de", 443, False)),
    ("https://bücher.de:8443", ("https://xn--bcher-kva.de:8443", "https", "xn--bcher-kva.de", 8443, False)),
    # IP literals.
    ("http://127.0.0.1", ("http://127.0.0.1", "http", "127.0.0.1", 80, False)),
    ("http://127.0.0.1:8000", ("http://127.0.0.1:8000", "http", "127.0.0.1", 8000, False)),
    ("http://[::1]", ("http://[::1]", "http", "[::1]", 80, False)),
    ("http://[::1]:8000", ("http://[::1]:8000", "http", "[::1]", 8000, False)),
    ("http://[::1]:*", ("http://[::1]:*", "http", "[::1]", ANY_PORT, False)),
    ("https://[2001:DB8:0::1]", ("https://[2001:db8::1]", "https", "[2001:db8::1]", 443, False)),
]


@pytest.mark.parametrize("text, expected", ACCEPTED, ids=[row[0] for row in ACCEPTED])
def test_accepted_pattern_compiles(text, expected):
    canonical, scheme, host, port, wildcard = expected
    assert parse_pattern(text) == Pattern(canonical, scheme, host, port, wildcard)


@pytest.mark.parametrize("text", [row[0] for row in ACCEPTED])
def test_canonical_text_parses_to_the_same_pattern(text):
    pattern = parse_pattern(text)
    assert parse_pattern(pattern.text) == pattern
    assert str(pattern) == pattern.text


def test_star_alone_matches_everything():
    pattern = parse_pattern("*")
    assert pattern.matches_everything
    assert pattern.port == ANY_PORT


@pytest.mark.parametrize("text", ["https://example.com", "https://*.example.com", "http://[::1]"])
def test_ordinary_patterns_do_not_match_everything(text):
    assert not parse_pattern(text).matches_everything


# --- refused patterns: each raises PatternError, never anything else ----------------------------

REFUSED = {
    # Wrong type.
    "list instead of string": ["https://example.com"],
    "tuple": ("https://example.com",),
    "bytes": b"https://example.com",
    "None": None,
    "int": 443,
    "dict": {"origin": "https://example.com"},
    # Empty or padded.
    "empty": "",
    "space": " ",
    "leading space": " https://example.com",
    "trailing space": "https://example.com ",
    "trailing newline": "https://example.com\n",
    # The opaque origin.
    "null": "null",
    "NULL": "NULL",
    "Null": "Null",
    # No scheme.
    "bare host": "example.com",
    "bare host with port": "example.com:443",
    "bare wildcard": "*.example.com",
    "Channels-style dot wildcard": ".example.com",
    "scheme-relative": "//example.com",
    "scheme colon only": "https:example.com",
    "scheme one slash": "https:/example.com",
    "bad scheme": "1http://example.com",
    "empty scheme": "://example.com",
    "unicode scheme": "httpś://example.com",
    "scheme with space": "ht tp://example.com",
    # Path, query, fragment, userinfo.
    "trailing slash": "https://example.com/",
    "path": "https://example.com/ws/chat",
    "path after port": "https://example.com:443/",
    "query": "https://example.com?x=1",
    "fragment": "https://example.com#top",
    "userinfo": "https://user@example.com",
    "userinfo password": "https://user:pw@example.com",
    "userinfo trick": "https://example.com@evil.com",
    "three slashes": "https:///example.com",
    # Whitespace and control characters inside.
    "inner space": "https://exa mple.com",
    "tab": "https://example.com\t:443",
    "CR": "https://exam\rple.com",
    "LF": "https://exam\nple.com",
    "NUL": "https://example.com\x00",
    "DEL": "https://example.com\x7f",
    "C1 control": "https://example.com\x85",
    "non-breaking space": "https://example.com\xa0",
    "comma list": "https://a.example.com,https://b.example.com",
    # Ports.
    "port 0": "https://example.com:0",
    "port 65536": "https://example.com:65536",
    "port 99999": "https://example.com:99999",
    "port -1": "https://example.com:-1",
    "port +80": "https://example.com:+80",
    "port leading zero": "https://example.com:080",
    "port leading zeros": "https://example.com:00443",
    "port 00": "https://example.com:00",
    "port empty": "https://example.com:",
    "port word": "https://example.com:http",
    "port hex": "https://example.com:0x50",
    "port range": "https://example.com:8000-8010",
    "port list": "https://example.com:80,443",
    "port star prefix": "https://example.com:8*",
    "port unicode digits": "https://example.com:\u0668\u0660",
    "port fullwidth digits": "https://example.com:\uff18\uff10",
    "two ports": "https://example.com:80:443",
    # Stars anywhere but the whole leftmost label.
    "star prefix": "https://*example.com",
    "star inside label": "https://a*.example.com",
    "star suffix label": "https://app*.example.com",
    "star middle label": "https://app.*.example.com",
    "star last label": "https://example.*",
    "two stars": "https://*.*.example.com",
    "star star": "https://**.example.com",
    "star alone host": "https://*",
    "star dot only": "https://*.",
    "star scheme": "*://example.com",
    "star with port": "*:443",
    "star over IPv4": "https://*.1.2.3.4",
    "star over IPv4 tail": "https://*.0.0.1",
    "star over IPv6": "https://*.[::1]",
    "regex": "https://.*\\.example\\.com",
    "regex anchors": "^https://example\\.com$",
    # Wildcard over a public suffix: ICANN and private sections, and unlisted TLDs.
    "*.com": "https://*.com",
    "*.org": "https://*.org",
    "*.uk": "https://*.uk",
    "*.co.uk": "https://*.co.uk",
    "*.ac.uk": "https://*.ac.uk",
    "*.com.au": "https://*.com.au",
    "*.github.io": "https://*.github.io",
    "*.herokuapp.com": "https://*.herokuapp.com",
    "*.appspot.com": "https://*.appspot.com",
    "*.blogspot.com": "https://*.blogspot.com",
    "*.s3.amazonaws.com": "https://*.s3.amazonaws.com",
    "*.netlify.app": "https://*.netlify.app",
    "*.vercel.app": "https://*.vercel.app",
    "*.pages.dev": "https://*.pages.dev",
    "*.GitHub.IO": "https://*.GitHub.IO",
    "*.ck wildcard rule": "https://*.ck",
    "*.anything.ck": "https://*.anything.ck",
    "*.localhost": "http://*.localhost",
    "*.internal": "https://*.internal",
    "*.xn--p1ai": "https://*.xn--p1ai",
    "*.рф": "https://*.рф",
    "*.com:*": "https://*.com:*",
    # Hosts that are not host names.
    "trailing dot": "https://example.com.",
    "trailing dot wildcard": "https://*.example.com.",
    "leading dot": "https://.example.com",
    "double dot": "https://example..com",
    "label leading hyphen": "https://-example.com",
    "label trailing hyphen": "https://example-.com",
    "label 64": "https://" + "a" * 64 + ".com",
    "host 254": "https://" + ".".join(["a" * 63] * 3 + ["b" * 62]),
    "empty host": "https://",
    "empty host port": "https://:443",
    "percent-encoded": "https://exa%6dple.com",
    "bang": "https://exa!mple.com",
    "quote": "https://'example.com'",
    "ipv4 short": "http://127.1",
    "ipv4 octal": "http://0177.0.0.1",
    "ipv4 hex": "http://0x7f.0.0.1",
    "ipv4 leading zero": "http://127.0.0.01",
    "ipv4 integer": "http://2130706433",
    "ipv4 out of range": "http://256.1.1.1",
    "ipv6 unbracketed": "http://::1",
    "ipv6 zone id": "http://[fe80::1%eth0]",
    "ipv6 zone id encoded": "http://[fe80::1%25eth0]",
    "ipv6 unclosed": "http://[::1",
    "ipv6 junk after": "http://[::1]x",
    "ipv6 bad": "http://[::g]",
    "ipv6 empty": "http://[]",
    "invalid IDN": "https://xn--\u00e9.com",
    "IDN with disallowed char": "https://exa\u2028mple.com",
    "IDN bidi mix": "https://a\u05d0.com",
    "IDN symbol (IDNA2008 disallows)": "https://☃.example.com",
}


@pytest.mark.parametrize("value", list(REFUSED.values()), ids=list(REFUSED))
def test_refused_pattern_raises_pattern_error_with_a_hint(value):
    with pytest.raises(PatternError) as info:
        parse_pattern(value)
    error = info.value
    assert error.pattern == value
    assert error.message and error.hint
    assert error.hint in str(error)
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    "value, hint_contains",
    [
        ("example.com", '"https://example.com"'),
        ("example.com/", '"https://example.com"'),
        ("https://example.com/ws/chat", '"https://example.com"'),
        ("https://user@example.com", '"https://example.com"'),
        ("https://example.com?x=1", '"https://example.com"'),
        ("https://example.com:0", "':*' for any port"),
        ("https://a*.example.com", '"https://*.example.com"'),
        ("https://*.co.uk", "*.yourname.co.uk"),
        ("https://*.github.io", "*.yourname.github.io"),
        ("null", "never trusted"),
        ("https://*.1.2.3.4", "List the address itself"),
        (["https://example.com"], '"https://example.com"'),
        ("http://::1", "Bracket IPv6 literals"),
        ("https://example.com.", "no trailing dot"),
    ],
)
def test_hint_says_what_to_write_instead(value, hint_contains):
    with pytest.raises(PatternError) as info:
        parse_pattern(value)
    assert hint_contains in info.value.hint


@pytest.mark.parametrize(
    "domain, public",
    [
        ("com", True),
        ("co.uk", True),
        ("github.io", True),
        ("herokuapp.com", True),
        ("anything.ck", True),
        ("localhost", True),
        ("example.com", False),
        ("example.co.uk", False),
        ("myapp.github.io", False),
        ("app.example.com", False),
    ],
)
def test_is_public_suffix(domain, public):
    assert is_public_suffix(domain) is public


# --- through conf: ImproperlyConfigured with the hint -------------------------------------------


@pytest.mark.parametrize(
    "allowed, hint_contains",
    [
        ("https://example.com", "Write a list"),
        (b"https://example.com", "Write a list"),
        ({"https://example.com"}, "Write a list"),
        (None, "Write a list"),
        (["example.com"], '"https://example.com"'),
        (["https://example.com/"], '"https://example.com"'),
        (["https://user@example.com"], '"https://example.com"'),
        (["null"], "never trusted"),
        (["https://example.com:0"], "':*' for any port"),
        (["https://example.com:65536"], "':*' for any port"),
        (["https://example.com:-1"], "':*' for any port"),
        (["https://example.com:080"], "':*' for any port"),
        (["https://example.com:+80"], "':*' for any port"),
        (["https://a*.example.com"], "whole leftmost label"),
        (["https://*.github.io"], "public suffix"),
        (["https://*.herokuapp.com"], "public suffix"),
        (["https://*.co.uk"], "public suffix"),
        (["https://*.com"], "public suffix"),
        (["https://ok.example.com", 42], "must be a string"),
    ],
)
def test_bad_allowed_origins_are_improperly_configured_with_a_hint(allowed, hint_contains):
    with override_settings(WSGUARD={"ALLOWED_ORIGINS": allowed}):
        with pytest.raises(ImproperlyConfigured) as info:
            conf.get_settings()
    assert hint_contains in str(info.value)
    assert "WSGUARD" in str(info.value)


def test_good_allowed_origins_are_stored_normalised():
    with override_settings(WSGUARD={"ALLOWED_ORIGINS": ["HTTPS://Bücher.de:443", "https://*.example.com"]}):
        patterns = conf.get_settings().allowed_origins
    assert [p.text for p in patterns] == ["https://xn--bcher-kva.de", "https://*.example.com"]


def test_every_bad_entry_is_reported_not_only_the_first():
    _, problems = conf.parse_patterns(["https://ok.example.com", "example.com", "https://*.com", "null"])
    assert [p.id for p in problems] == ["wsguard.E001"] * 3
