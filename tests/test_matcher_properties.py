"""The compiled OriginMatcher: decision tables, then properties checked with hypothesis against a
reference model written independently of both the matcher and Pattern.matches."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from wsguard.origins import (
    ANY_PORT,
    DEFAULT_PORTS,
    MAX_ORIGIN_LENGTH,
    Origin,
    OriginMatcher,
    Pattern,
    PatternError,
    Reason,
    Rule,
    parse_origin,
    parse_pattern,
)

# --- decision tables ----------------------------------------------------------------------------

DECISIONS = [
    # (patterns, Origin header, trusted?)
    # Wildcards: any depth below, never the apex, never a look-alike.
    (["https://*.example.com"], "https://a.example.com", True),
    (["https://*.example.com"], "https://a.b.example.com", True),
    (["https://*.example.com"], "https://a.b.c.d.e.example.com", True),
    (["https://*.example.com"], "https://A.EXAMPLE.COM", True),
    (["https://*.example.com"], "https://example.com", False),
    (["https://*.example.com"], "https://evilexample.com", False),
    (["https://*.example.com"], "https://a.evilexample.com", False),
    (["https://*.example.com"], "https://app.example.com.evil.com", False),
    (["https://*.example.com"], "https://example.com.evil.com", False),
    (["https://*.example.com"], "https://a.example.co", False),
    (["https://*.example.com"], "https://a.example.comm", False),
    (["https://*.example.com"], "https://a-example.com", False),
    (["https://*.example.com"], "http://a.example.com", False),
    (["https://*.example.com"], "https://a.example.com:8443", False),
    (["https://*.example.com"], "https://a.example.com:443", True),
    (["https://*.example.com:*"], "https://a.example.com:8443", True),
    (["https://*.example.com:*"], "https://a.example.com", True),
    (["https://*.example.com:*"], "http://a.example.com:8443", False),
    (["https://*.example.com:8443"], "https://a.example.com:8443", True),
    (["https://*.example.com:8443"], "https://a.example.com", False),
    (["https://*.app.example.com"], "https://x.app.example.com", True),
    (["https://*.app.example.com"], "https://app.example.com", False),
    (["https://*.app.example.com"], "https://x.example.com", False),
    (["https://*.bücher.de"], "https://shop.xn--bcher-kva.de", True),
    (["https://*.bücher.de"], "https://xn--bcher-kva.de", False),
    # Exact origins: scheme, host and port all count; the default port is the same origin.
    (["https://example.com"], "https://example.com", True),
    (["https://example.com"], "https://example.com:443", True),
    (["https://example.com:443"], "https://example.com", True),
    (["https://example.com"], "HTTPS://EXAMPLE.COM", True),
    (["https://example.com"], "https://Example.Com:443", True),
    (["https://EXAMPLE.com"], "https://example.com", True),
    (["https://example.com"], "http://example.com", False),
    (["https://example.com"], "http://example.com:443", False),
    (["http://example.com"], "https://example.com", False),
    (["http://example.com"], "https://example.com:80", False),
    (["https://example.com"], "wss://example.com", False),
    (["https://example.com"], "https://example.com:8443", False),
    (["https://example.com"], "https://example.com:80", False),
    (["https://example.com"], "https://a.example.com", False),
    (["https://example.com"], "https://example.com.evil.com", False),
    (["https://example.com"], "https://evilexample.com", False),
    (["https://example.com"], "https://example.co", False),
    (["https://example.com"], "https://xexample.com", False),
    (["https://example.com:8443"], "https://example.com:8443", True),
    (["https://example.com:8443"], "https://example.com", False),
    (["https://example.com:8443"], "https://example.com:8444", False),
    (["https://example.com:*"], "https://example.com:1", True),
    (["https://example.com:*"], "https://example.com:65535", True),
    (["https://example.com:*"], "https://a.example.com:8443", False),
    (["http://localhost:*"], "http://localhost:3000", True),
    (["http://localhost:*"], "https://localhost:3000", False),
    (["https://bücher.de"], "https://xn--bcher-kva.de", True),
    (["https://xn--bcher-kva.de"], "https://xn--bcher-kva.de", True),
    (["https://bücher.de"], "https://bucher.de", False),
    # IP literals.
    (["http://127.0.0.1:8000"], "http://127.0.0.1:8000", True),
    (["http://127.0.0.1:8000"], "http://127.0.0.1:8001", False),
    (["http://127.0.0.1:8000"], "http://127.0.0.2:8000", False),
    (["http://[::1]:8000"], "http://[::1]:8000", True),
    (["http://[::1]:8000"], "http://[0:0:0:0:0:0:0:1]:8000", True),
    (["http://[::1]:*"], "http://[::1]:9", True),
    (["https://*.example.com"], "https://[::1]", False),
    # Sibling origins: listing one never trusts the others.
    (["https://app.example.com"], "https://blog.example.com", False),
    (["https://app.example.com"], "https://app.example.com:8443", False),
    (["https://app.example.com", "https://blog.example.com"], "https://blog.example.com", True),
    (["https://app.example.com", "https://*.partner.example"], "https://x.partner.example", True),
    (["https://app.example.com", "https://*.partner.example"], "https://partner.example", False),
    # The match-everything pattern trusts any well-formed origin.
    (["*"], "https://evil.example", True),
    (["*"], "http://127.0.0.1:9", True),
    (["*"], "chrome-extension://abcdefgh", True),
    # Nothing listed: nothing trusted.
    ([], "https://example.com", False),
]


@pytest.mark.parametrize("patterns, raw, trusted", DECISIONS)
def test_matcher_decision(patterns, raw, trusted):
    origin = parse_origin(raw)
    assert isinstance(origin, Origin)
    found = OriginMatcher.compile(patterns).match(origin)
    assert (found is not None) is trusted
    if found is not None:
        assert found.pattern.matches(origin)


@pytest.mark.parametrize("patterns, raw, trusted", DECISIONS)
def test_reference_semantics_agree_with_the_table(patterns, raw, trusted):
    origin = parse_origin(raw)
    assert any(parse_pattern(p).matches(origin) for p in patterns) is trusted


@pytest.mark.parametrize(
    "raw",
    ["null", "https://a.example.com/", "https://a.example.com, https://b.example.com", "file://x", ""],
)
def test_unparseable_origins_never_reach_the_matcher(raw):
    assert isinstance(parse_origin(raw), Reason)


@pytest.mark.parametrize(
    "prefix, path, applies",
    [
        ("", "/anything", True),
        ("", "", True),
        ("/ws/chat/", "/ws/chat/", True),
        ("/ws/chat/", "/ws/chat/room/", True),
        ("/ws/chat/", "/ws/chat", False),
        ("/ws/chat/", "/ws/chatroom/", False),
        ("/ws/chat", "/ws/chat", True),
        ("/ws/chat", "/ws/chat/", True),
        ("/ws/chat", "/ws/chat/room/", True),
        ("/ws/chat", "/ws/chat-admin/", False),
        ("/ws/chat", "/ws/chatops", False),
        ("/ws/chat", "/ws/", False),
        ("/ws/chat", "/WS/chat", False),
        ("/ws/chat", "", False),
    ],
)
def test_path_prefix_applies_on_segment_boundaries(prefix, path, applies):
    rule = Rule(parse_pattern("https://partner.example"), path_prefix=prefix)
    matcher = OriginMatcher.compile([rule])
    assert rule.applies_to(path) is applies
    assert (matcher.match(parse_origin("https://partner.example"), path) is not None) is applies


def test_a_scoped_rule_does_not_hide_an_unscoped_one_for_the_same_origin():
    scoped = Rule(parse_pattern("https://partner.example"), path_prefix="/ws/chat/", source="admin:1")
    everywhere = Rule(parse_pattern("https://partner.example"), source="settings")
    matcher = OriginMatcher.compile([scoped, everywhere])
    origin = parse_origin("https://partner.example")
    assert matcher.match(origin, "/ws/chat/").rule is scoped
    assert matcher.match(origin, "/ws/other/").rule is everywhere


def test_the_more_specific_rule_wins_and_its_source_is_reported():
    matcher = OriginMatcher.compile(
        [
            Rule(parse_pattern("*"), source="star"),
            Rule(parse_pattern("https://*.example.com"), source="wild"),
            Rule(parse_pattern("https://*.app.example.com"), source="deeper"),
            Rule(parse_pattern("https://x.app.example.com"), source="exact"),
        ]
    )
    assert matcher.match(parse_origin("https://x.app.example.com")).rule.source == "exact"
    assert matcher.match(parse_origin("https://y.app.example.com")).rule.source == "deeper"
    assert matcher.match(parse_origin("https://y.example.com")).rule.source == "wild"
    assert matcher.match(parse_origin("https://elsewhere.example")).rule.source == "star"


def test_compile_accepts_strings_patterns_and_rules():
    matcher = OriginMatcher.compile(
        ["https://a.example", parse_pattern("https://b.example"), Rule(parse_pattern("https://c.example"))]
    )
    assert len(matcher) == 3
    for host in ("a", "b", "c"):
        assert matcher.match(parse_origin(f"https://{host}.example")) is not None


def test_compile_raises_pattern_error_for_a_bad_string():
    with pytest.raises(PatternError):
        OriginMatcher.compile(["https://ok.example", "https://*.com"])


@pytest.mark.parametrize(
    "patterns, raw, nearest",
    [
        (
            ["https://app.example.com", "https://*.partner.example", "http://localhost:8000"],
            "https://app.example.co",
            "https://app.example.com",
        ),
        (
            ["https://app.example.com", "https://*.partner.example", "http://localhost:8000"],
            "https://partner.example",
            "https://*.partner.example",
        ),
        (
            ["https://app.example.com", "https://*.partner.example", "http://localhost:8000"],
            "http://localhost:8001",
            "http://localhost:8000",
        ),
    ],
)
def test_nearest_names_the_most_similar_pattern(patterns, raw, nearest):
    matcher = OriginMatcher.compile(patterns)
    assert [r.pattern.text for r in matcher.nearest(parse_origin(raw))] == [nearest]


# --- properties ---------------------------------------------------------------------------------

# A small alphabet of labels so that random patterns and origins collide often.
LABELS = ["a", "b", "app", "example", "evil", "xn--bcher-kva", "com", "co", "uk", "io", "partner"]
SCHEMES = ["https", "http", "wss"]
PORTS = [None, "443", "80", "8443", "1", "65535"]

labels = st.lists(st.sampled_from(LABELS), min_size=1, max_size=4)
hosts = labels.map(".".join)


@st.composite
def origin_texts(draw: st.DrawFn) -> str:
    host = draw(st.one_of(hosts, st.sampled_from(["127.0.0.1", "[::1]", "10.0.0.1"])))
    port = draw(st.sampled_from(PORTS))
    scheme = draw(st.sampled_from(SCHEMES))
    return f"{scheme}://{host}" + (f":{port}" if port else "")


@st.composite
def pattern_texts(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 30)) == 0:
        return "*"
    scheme = draw(st.sampled_from(SCHEMES))
    host = draw(st.one_of(hosts, st.sampled_from(["127.0.0.1", "[::1]"])))
    wildcard = not host[0].isdigit() and not host.startswith("[") and draw(st.booleans())
    port = draw(st.sampled_from([*PORTS, "*"]))
    return f"{scheme}://{'*.' if wildcard else ''}{host}" + (f":{port}" if port else "")


KEEP = "keep"  # derived_origin: keep the pattern's scheme or port


def derived_origin(pattern_text: str, extra: list[str], scheme: str, port: str | None) -> str:
    """An origin built from a pattern so that hits are frequent: its host (below the star, with
    ``extra`` labels in front), its scheme and port unless others are given."""
    if pattern_text == "*":
        pattern_text = "https://example.com"
    p_scheme, _, rest = pattern_text.partition("://")
    if rest.startswith("["):
        host, _, p_port = rest[1:].partition("]")
        host, p_port = f"[{host}]", p_port.lstrip(":")
    else:
        host, _, p_port = rest.partition(":")
        if host.startswith("*."):
            host = host[2:]
        if not host[0].isdigit():
            host = ".".join([*extra, host])
    if port == KEEP:
        port = None if p_port in ("", "*") else p_port
    return f"{p_scheme if scheme == KEEP else scheme}://{host}" + (f":{port}" if port else "")


SCHEME_CHOICES = [KEEP, KEEP, KEEP, *SCHEMES]
PORT_CHOICES = [KEEP, KEEP, KEEP, *PORTS]


@st.composite
def policies(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """(pattern texts, origin texts), about half the origins derived from the patterns."""
    pattern_list = draw(st.lists(pattern_texts(), max_size=12))
    origin_list = []
    for _ in range(draw(st.integers(1, 12))):
        if pattern_list and draw(st.booleans()):
            origin_list.append(
                derived_origin(
                    draw(st.sampled_from(pattern_list)),
                    draw(st.lists(st.sampled_from(LABELS), max_size=2)),
                    draw(st.sampled_from(SCHEME_CHOICES)),
                    draw(st.sampled_from(PORT_CHOICES)),
                )
            )
        else:
            origin_list.append(draw(origin_texts()))
    return pattern_list, origin_list


def compiled_patterns(texts: list[str]) -> list[Pattern]:
    out = []
    for text in texts:
        try:
            out.append(parse_pattern(text))
        except PatternError:
            pass  # e.g. a wildcard over a public suffix: refused, which is the point
    return out


def reference_trusts(pattern_text: str, origin_text: str) -> bool:
    """Independent model of the grammar, from the text of both, by splitting strings: no regexes,
    no shared helpers with wsguard.origins."""
    if pattern_text == "*":
        return True
    p_scheme, _, p_rest = pattern_text.partition("://")
    o_scheme, _, o_rest = origin_text.partition("://")
    if p_scheme.lower() != o_scheme.lower():
        return False

    def split(rest: str, scheme: str) -> tuple[str, str]:
        if rest.startswith("["):
            host, _, after = rest.partition("]")
            host += "]"
            port = after[1:] if after.startswith(":") else ""
        else:
            host, _, port = rest.partition(":")
        default = {"http": "80", "https": "443", "wss": "443", "ws": "80"}.get(scheme.lower(), "")
        return host.lower(), port or default

    p_host, p_port = split(p_rest, p_scheme)
    o_host, o_port = split(o_rest, o_scheme)
    if p_port != "*" and p_port != o_port:
        return False
    if p_host.startswith("*."):
        suffix = p_host[2:]
        return o_host != suffix and o_host.endswith("." + suffix) and not o_host.startswith("[")
    return p_host == o_host


PROPERTY_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(policies())
def test_matcher_agrees_with_a_linear_scan_of_pattern_matches(policy):
    pattern_list, origin_list = policy
    patterns = compiled_patterns(pattern_list)
    matcher = OriginMatcher.compile(patterns)
    for text in origin_list:
        origin = parse_origin(text)
        assert isinstance(origin, Origin)
        expected = any(p.matches(origin) for p in patterns)
        found = matcher.match(origin)
        assert (found is not None) is expected
        if found is not None:
            assert found.pattern.matches(origin)
            assert found.pattern in patterns


@PROPERTY_SETTINGS
@given(policies())
def test_matcher_agrees_with_the_independent_reference(policy):
    pattern_list, origin_list = policy
    accepted = [(text, p) for text in pattern_list for p in compiled_patterns([text])]
    matcher = OriginMatcher.compile([p for _, p in accepted])
    for text in origin_list:
        expected = any(reference_trusts(pattern_text, text) for pattern_text, _ in accepted)
        assert (matcher.match(parse_origin(text)) is not None) is expected


def test_derived_origins_give_hits_and_misses():
    # Guard against a vacuous property: the generators must make both outcomes common.
    import random

    rng = random.Random(0)
    outcomes = []
    for _ in range(500):
        host = ".".join(rng.choice(LABELS) for _ in range(rng.randint(1, 4)))
        text = f"{rng.choice(SCHEMES)}://{'*.' if rng.random() < 0.5 else ''}{host}"
        try:
            matcher = OriginMatcher.compile([text])
        except PatternError:
            continue
        origin = derived_origin(
            text, rng.sample(LABELS, rng.randint(0, 2)), rng.choice(SCHEME_CHOICES), rng.choice(PORT_CHOICES)
        )
        outcomes.append(matcher.match(parse_origin(origin)) is not None)
    assert 0.1 < sum(outcomes) / len(outcomes) < 0.9


@PROPERTY_SETTINGS
@given(st.lists(pattern_texts(), max_size=12), origin_texts(), st.randoms(use_true_random=False))
def test_matching_is_invariant_to_case(pattern_list, text, rnd):
    matcher = OriginMatcher.compile(compiled_patterns(pattern_list))
    flipped = "".join(c.upper() if rnd.random() < 0.5 else c for c in text)
    assert parse_origin(flipped) == parse_origin(text)
    assert (matcher.match(parse_origin(flipped)) is None) is (matcher.match(parse_origin(text)) is None)
    flipped_patterns = ["".join(c.upper() if rnd.random() < 0.5 else c for c in p) for p in pattern_list]
    assert compiled_patterns(flipped_patterns) == compiled_patterns(pattern_list)


@PROPERTY_SETTINGS
@given(policies())
def test_matcher_does_not_depend_on_pattern_order(policy):
    pattern_list, origin_list = policy
    patterns = compiled_patterns(pattern_list)
    forward = OriginMatcher.compile(patterns)
    backward = OriginMatcher.compile(list(reversed(patterns)))
    for text in origin_list:
        origin = parse_origin(text)
        assert (forward.match(origin) is None) is (backward.match(origin) is None)


@PROPERTY_SETTINGS
@given(origin_texts())
def test_origin_serialisation_round_trips(text):
    origin = parse_origin(text)
    assert isinstance(origin, Origin)
    assert parse_origin(origin.serialize()) == origin
    assert parse_origin(origin.serialize().encode("ascii")) == origin


@PROPERTY_SETTINGS
@given(pattern_texts())
def test_pattern_text_round_trips(text):
    try:
        pattern = parse_pattern(text)
    except PatternError:
        assume(False)
    assert parse_pattern(pattern.text) == pattern


@PROPERTY_SETTINGS
@given(pattern_texts())
def test_an_exact_pattern_trusts_its_own_origin(text):
    try:
        pattern = parse_pattern(text)
    except PatternError:
        assume(False)
    assume(not pattern.wildcard and not pattern.matches_everything)
    port = DEFAULT_PORTS.get(pattern.scheme, 443) if pattern.port == ANY_PORT else pattern.port
    origin = Origin(pattern.scheme, pattern.host, port)
    assert OriginMatcher.compile([pattern]).match(parse_origin(origin.serialize())) is not None


# Arbitrary input: parse_origin never raises and returns an Origin or a Reason.

hostile_text = st.one_of(
    st.text(max_size=400),
    st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=400),
    st.builds(lambda a, b: a + b, origin_texts(), st.text(max_size=20)),
    st.builds(lambda a, b: a + b, st.text(max_size=20), origin_texts()),
    st.builds(lambda n, s: s * n, st.integers(1, 300_000), st.sampled_from(["a", "a.", "https://", ":", "[", "\x00"])),
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(hostile_text, hostile_text.map(lambda s: s.encode("utf-8", "surrogatepass")), st.binary(max_size=600)))
def test_parse_origin_never_raises(raw):
    result = parse_origin(raw)
    assert isinstance(result, (Origin, Reason))
    if isinstance(result, Origin):
        assert len(raw) <= MAX_ORIGIN_LENGTH
        assert parse_origin(result.serialize()) == result
        assert result.serialize().isascii()
        assert result.host == result.host.lower()


@settings(max_examples=200, deadline=None)
@given(
    st.tuples(st.binary(min_size=1, max_size=32), st.integers(MAX_ORIGIN_LENGTH + 1, 2_000_000)).map(
        lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]]
    )
)
def test_huge_values_are_malformed(raw):
    assert parse_origin(raw) is Reason.ORIGIN_MALFORMED


pattern_input = st.one_of(
    st.text(max_size=80),
    st.builds(lambda a, b: a + b, pattern_texts(), st.text(max_size=10)),
    st.builds(lambda a, b: a + b, st.just("https://"), st.text(max_size=60)),
    st.builds(lambda a, b: a + b, st.just("https://*."), st.text(max_size=60)),
    st.none(),
    st.integers(),
    st.binary(max_size=40),
    st.lists(st.text(max_size=10), max_size=3),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern_input)
def test_parse_pattern_raises_only_pattern_error(value):
    try:
        pattern = parse_pattern(value)
    except PatternError as exc:
        assert exc.hint
        return
    assert isinstance(pattern, Pattern)
    assert pattern.text.isascii()
    assert parse_pattern(pattern.text) == pattern
