"""``wsguard_probe``: the battery and classifier as pure functions, and the command against real
daphne processes serving wsguard's demo, a bare Channels app, and naive origin checks."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.probe_apps import SESSION_COOKIE
from tests.servers import free_port
from wsguard.origins import Origin, parse_origin
from wsguard.probe import (
    MAX_CONCURRENCY,
    Outcome,
    Overall,
    ProbeError,
    ProbeReport,
    Response,
    Row,
    RowResult,
    Verdict,
    build_battery,
    build_request,
    classify,
    parse_header_option,
    parse_target,
    render_table,
    report_json,
    verdict,
)

# --- the target -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, trusted, host, port, path, host_header",
    [
        ("ws://127.0.0.1:8000/ws/echo/", "http://127.0.0.1:8000", "127.0.0.1", 8000, "/ws/echo/", "127.0.0.1:8000"),
        ("wss://Target.com/ws?x=1", "https://target.com", "target.com", 443, "/ws?x=1", "target.com"),
        ("ws://localhost", "http://localhost", "localhost", 80, "/", "localhost"),
        ("wss://[::1]:8443/s", "https://[::1]:8443", "::1", 8443, "/s", "[::1]:8443"),
        ("ws://target.com:443/", "http://target.com:443", "target.com", 443, "/", "target.com:443"),
    ],
)
def test_target_derives_its_own_origin(url, trusted, host, port, path, host_header):
    target = parse_target(url)
    assert (target.trusted_origin, target.host, target.port, target.path, target.host_header) == (
        trusted,
        host,
        port,
        path,
        host_header,
    )


def test_origin_option_overrides_what_is_trusted_but_not_where_it_connects():
    target = parse_target("ws://127.0.0.1:9000/ws/", origin="https://app.example.com")
    assert target.trusted_origin == "https://app.example.com"
    assert (target.host, target.port, target.host_header) == ("127.0.0.1", 9000, "127.0.0.1:9000")


@pytest.mark.parametrize(
    "url, origin",
    [
        ("http://127.0.0.1/", None),
        ("127.0.0.1:8000", None),
        ("ws://user:pw@127.0.0.1/", None),
        ("ws://127.0.0.1/#frag", None),
        ("ws:///path", None),
        ("ws://127.0.0.1:99999/", None),
        ("ws://127.0.0.1/ path", None),
        ("ws://127.0.0.1/", "127.0.0.1"),
        ("ws://127.0.0.1/", "https://a.example/path"),
        ("ws://127.0.0.1/", "null"),
    ],
)
def test_unusable_urls_and_origins_are_usage_errors(url, origin):
    with pytest.raises(ProbeError):
        parse_target(url, origin)


@pytest.mark.parametrize("text", ["NoColon", "Bad Name: x", "X-A: a\r\nInjected: 1", "Origin: https://a.example"])
def test_bad_or_reserved_extra_headers_are_refused(text):
    with pytest.raises(ProbeError):
        parse_header_option(text)


def test_extra_header_is_split_and_trimmed():
    assert parse_header_option("X-Probe:  yes ") == ("X-Probe", "yes")


# --- the battery ------------------------------------------------------------------------------


def battery(origin: str) -> dict[str, Row]:
    parsed = parse_origin(origin)
    assert isinstance(parsed, Origin)
    return {row.name: row for row in build_battery(parsed)}


def values(row: Row) -> list[str]:
    return [v.decode("latin-1") for v in row.origins]


def test_battery_starts_with_the_control_row_and_names_are_unique():
    rows = build_battery(Origin("https", "target.com", 443))
    assert rows[0].is_control and values(rows[0]) == ["https://target.com"]
    assert sum(row.is_control for row in rows) == 1
    assert len({row.name for row in rows}) == len(rows)
    assert len({row.origins for row in rows}) == len(rows)


@pytest.mark.parametrize(
    "name, sent",
    [
        ("no Origin", []),
        ("null", ["null"]),
        ("attacker", ["https://attacker.example"]),
        ("two Origins, trusted first", ["https://target.com", "https://attacker.example"]),
        ("two Origins, attacker first", ["https://attacker.example", "https://target.com"]),
        ("comma list, trusted first", ["https://target.com, https://attacker.example"]),
        ("other scheme", ["http://target.com"]),
        ("other port", ["https://target.com:444"]),
        ("suffix look-alike", ["https://target.com.evil.example"]),
        ("prefix look-alike", ["https://eviltarget.com"]),
        ("dash look-alike", ["https://target.com-evil.example"]),
        ("subdomain", ["https://evil.target.com"]),
        ("IPv4 loopback", ["https://127.0.0.1"]),
        ("IPv6 loopback", ["https://[::1]"]),
        ("decimal IPv4", ["https://2130706433"]),
        ("hex IPv4", ["https://0x7f000001"]),
        ("uppercase", ["HTTPS://TARGET.COM"]),
        ("explicit default port", ["https://target.com:443"]),
        ("trailing dot", ["https://target.com."]),
        ("userinfo look-alike", ["https://target.com@evil.example"]),
        ("path suffix", ["https://target.com/path"]),
        ("tab inside", ["https://target.com\t.evil.example"]),
        ("punycode look-alike", ["https://xn--trget-4ve.com"]),
    ],
)
def test_battery_rows_for_a_named_host(name, sent):
    assert values(battery("https://target.com")[name]) == sent


def test_sibling_and_parent_rows_only_below_a_registrable_domain():
    rows = battery("https://app.target.com")
    assert values(rows["sibling subdomain"]) == ["https://evil.target.com"]
    assert values(rows["parent domain"]) == ["https://target.com"]
    # target.com's parent is "com", a public suffix: no sibling or parent rows then.
    assert "parent domain" not in battery("https://target.com")


def test_battery_for_a_loopback_origin_with_a_port():
    rows = battery("http://127.0.0.1:8000")
    assert values(rows["suffix look-alike"]) == ["http://127.0.0.1:8000.evil.example"]
    assert values(rows["other port"]) == ["http://127.0.0.1:8001"]
    assert values(rows["default port"]) == ["http://127.0.0.1"]
    assert values(rows["localhost"]) == ["http://localhost:8000"]
    # The IPv4 loopback row would repeat the control row, and there is no explicit default port.
    assert "IPv4 loopback" not in rows
    assert "explicit default port" not in rows


def test_over_long_and_unicode_rows():
    rows = battery("https://target.com")
    assert len(rows["over-long origin"].origins[0]) > 4000
    assert rows["over-long origin"].origins[0].endswith(b".target.com")
    raw = rows["raw UTF-8 look-alike"].origins[0]
    assert not raw.isascii() and raw.decode("utf-8") == "https://t\u0430rget.com"


def test_equivalent_rows_are_exactly_the_same_origin_spellings():
    rows = battery("https://target.com")
    equivalent = {name for name, row in rows.items() if row.equivalent}
    assert equivalent == {"uppercase", "mixed case host", "explicit default port"}
    for name in equivalent:
        assert parse_origin(rows[name].origins[0]) == Origin("https", "target.com", 443)


def test_request_carries_the_rows_headers_exactly_and_the_urls_host():
    target = parse_target("ws://127.0.0.1:8000/ws/?a=b")
    row = battery("http://127.0.0.1:8000")["two Origins, attacker first"]
    request = build_request(target, row, [("X-Trace", "1")], "sessionid=abc")
    lines = request.split(b"\r\n")
    assert lines[0] == b"GET /ws/?a=b HTTP/1.1"
    assert b"Host: 127.0.0.1:8000" in lines
    assert [line for line in lines if line.startswith(b"Origin:")] == [
        b"Origin: https://attacker.example",
        b"Origin: http://127.0.0.1:8000",
    ]
    assert b"X-Trace: 1" in lines and b"Cookie: sessionid=abc" in lines
    assert request.endswith(b"\r\n\r\n") and request.count(b"\r\n\r\n") == 1


def test_a_host_header_option_replaces_the_host_line():
    target = parse_target("ws://127.0.0.1:8000/")
    request = build_request(target, battery("http://127.0.0.1:8000")["null"], [("Host", "app.example.com")], None)
    assert request.count(b"Host:") == 1 and b"Host: app.example.com\r\n" in request


# --- classifying ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head, outcome, status",
    [
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket", Outcome.UPGRADED, 101),
        (b"HTTP/1.1 403 Access denied", Outcome.FORBIDDEN, 403),
        (b"HTTP/1.0 403", Outcome.FORBIDDEN, 403),
        (b"HTTP/1.1 400 Bad Request", Outcome.OTHER_STATUS, 400),
        (b"HTTP/1.1 302 Found\r\nLocation: https://elsewhere.example/", Outcome.OTHER_STATUS, 302),
        (b"", Outcome.OTHER_STATUS, None),
        (b"SSH-2.0-OpenSSH_9.6", Outcome.OTHER_STATUS, None),
        (b"HTTP/1.1 1010 Nope", Outcome.OTHER_STATUS, None),
    ],
)
def test_classify(head, outcome, status):
    response = classify(head)
    assert (response.outcome, response.status) == (outcome, status)


def test_classify_keeps_only_a_printable_status_line():
    response = classify(b"HTTP/1.1 403 \x1b[31mred\r\nSet-Cookie: sessionid=server-secret")
    assert "\x1b" not in response.detail and "server-secret" not in response.detail


UPGRADED = Response(Outcome.UPGRADED, 101, "HTTP/1.1 101 Switching Protocols")
REFUSED = Response(Outcome.FORBIDDEN, 403, "HTTP/1.1 403 Forbidden")
TIMED_OUT = Response(Outcome.TIMEOUT, None, "no response within 5s")
NO_CONNECTION = Response(Outcome.CONNECTION_ERROR, None, "ConnectionRefusedError: refused")


@pytest.mark.parametrize(
    "name, response, expected",
    [
        ("trusted origin", UPGRADED, Verdict.CONTROL_UPGRADED),
        ("trusted origin", REFUSED, Verdict.CONTROL_REFUSED),
        ("attacker", UPGRADED, Verdict.VULNERABLE),
        ("attacker", REFUSED, Verdict.SAFE),
        ("attacker", TIMED_OUT, Verdict.SAFE),
        ("attacker", NO_CONNECTION, Verdict.SAFE),
        ("uppercase", UPGRADED, Verdict.SAME_ORIGIN),
        ("uppercase", REFUSED, Verdict.SAFE),
        ("trailing dot", UPGRADED, Verdict.VULNERABLE),
    ],
)
def test_verdict(name, response, expected):
    assert verdict(battery("https://target.com")[name], response) is expected


def fake_report(responses: dict[str, Response], default: Response, *, cookie: bool = False) -> ProbeReport:
    target = parse_target("wss://target.com/ws/")
    rows = build_battery(target.trusted)
    results = []
    for row in rows:
        response = responses.get(row.name, default)
        results.append(RowResult(row, response, verdict(row, response)))
    return ProbeReport(target=target, results=tuple(results), cookie=cookie)


def test_overall_safe_when_only_the_control_and_equivalents_are_upgraded():
    report = fake_report({"trusted origin": UPGRADED, "uppercase": UPGRADED}, REFUSED)
    assert report.overall is Overall.SAFE


def test_overall_vulnerable_when_any_forged_row_is_upgraded_even_without_the_control():
    report = fake_report({"null": UPGRADED}, REFUSED)
    assert report.overall is Overall.VULNERABLE and "null" in report.reason


def test_overall_inconclusive_when_the_control_is_refused_suggests_a_cookie():
    report = fake_report({}, REFUSED)
    assert report.overall is Overall.INCONCLUSIVE and "--cookie" in report.reason


def test_overall_error_when_nothing_could_connect():
    assert fake_report({}, NO_CONNECTION).overall is Overall.ERROR


def test_output_never_contains_credentials():
    report = fake_report({"trusted origin": UPGRADED}, REFUSED, cookie=True)
    headers = [("Authorization", "Bearer tok-123"), ("X-Env", "staging")]
    text = "\n".join(render_table(report, headers)) + json.dumps(report_json(report))
    assert "tok-123" not in text
    assert "Authorization: <redacted>" in text and "X-Env: staging" in text
    assert "cookie:   yes" in text and '"cookie": true' in text


def test_table_has_a_line_per_row_and_an_overall_line():
    report = fake_report({"trusted origin": UPGRADED, "suffix look-alike": UPGRADED}, REFUSED)
    lines = render_table(report)
    suffix = next(line for line in lines if "suffix look-alike" in line and "host suffix" not in line)
    assert "Origin: https://target.com.evil.example" in suffix and suffix.endswith("VULNERABLE")
    assert lines[-1].startswith("overall: VULNERABLE")


# --- the command against real servers ---------------------------------------------------------


def probe(url: str, *args: str) -> tuple[int, dict]:
    """Run the command with --json; return the exit status and the document."""
    out = StringIO()
    try:
        call_command("wsguard_probe", url, "--json", *args, stdout=out)
        status = 0
    except SystemExit as exc:
        status = int(exc.code)
    return status, json.loads(out.getvalue())


def by_verdict(document: dict, wanted: str) -> set[str]:
    return {row["name"] for row in document["rows"] if row["verdict"] == wanted}


@pytest.mark.daphne
def test_wsguard_demo_is_safe(daphne_factory):
    server = daphne_factory("demo_project.asgi:application", DJANGO_SETTINGS_MODULE="tests.settings")
    status, document = probe(f"ws://{server.base}/ws/echo/")
    assert status == 0 and document["overall"] == "SAFE"
    assert document["rows"][0]["outcome"] == "upgraded"
    assert by_verdict(document, "VULNERABLE") == set()
    assert all(row["outcome"] != "upgraded" for row in document["rows"] if not row["equivalent"] and not row["control"])
    assert "Traceback" not in server.log()


@pytest.mark.daphne
def test_bare_channels_app_is_vulnerable(daphne_factory):
    server = daphne_factory("tests.probe_apps:vulnerable_application")
    status, document = probe(f"ws://{server.base}/ws/")
    assert status == 2 and document["overall"] == "VULNERABLE"
    vulnerable = by_verdict(document, "VULNERABLE")
    assert {"attacker", "null", "no Origin", "prefix look-alike", "other port", "userinfo look-alike"} <= vulnerable
    assert by_verdict(document, "OK (same origin)") == {"uppercase"}


def starts_with_trusted(row: dict, trusted: str) -> bool:
    return bool(row["sent"]) and row["sent"][0].startswith(f"Origin: {trusted}")


@pytest.mark.daphne
def test_naive_prefix_check_is_caught_exactly_on_the_look_alikes(daphne_factory):
    server = daphne_factory("tests.probe_apps:prefix_application", PROBE_TRUSTED_ORIGIN="https://app.example.com")
    status, document = probe(f"ws://{server.base}/ws/", "--origin", "https://app.example.com")
    assert status == 2
    vulnerable = by_verdict(document, "VULNERABLE")
    assert {"suffix look-alike", "dash look-alike", "userinfo look-alike", "path suffix"} <= vulnerable
    assert by_verdict(document, "OK (same origin)") == {"explicit default port"}
    # Exactly the rows whose first Origin begins with the trusted origin, except those the server
    # itself (Autobahn, inside daphne) refused with 400 before the application saw them.
    expected = {
        row["name"]
        for row in document["rows"]
        if not row["control"]
        and not row["equivalent"]
        and starts_with_trusted(row, "https://app.example.com")
        and row["status"] != 400
    }
    assert vulnerable == expected


@pytest.mark.daphne
def test_naive_prefix_check_on_the_sites_own_origin(daphne_factory):
    server = daphne_factory("tests.probe_apps:prefix_application")
    status, document = probe(f"ws://{server.base}/ws/")
    assert status == 2
    trusted = f"http://{server.base}"
    vulnerable = by_verdict(document, "VULNERABLE")
    assert {"userinfo look-alike", "path suffix"} <= vulnerable
    expected = {
        row["name"]
        for row in document["rows"]
        if not row["control"] and not row["equivalent"] and starts_with_trusted(row, trusted) and row["status"] != 400
    }
    assert vulnerable == expected
    # Autobahn cannot parse "http://127.0.0.1:PORT.evil.example" and answers 400 itself.
    suffix = next(row for row in document["rows"] if row["name"] == "suffix look-alike")
    assert suffix["sent"] == [f"Origin: {trusted}.evil.example"] and suffix["status"] == 400


@pytest.mark.daphne
def test_control_refused_without_the_cookie_is_inconclusive(daphne_factory):
    server = daphne_factory("tests.probe_apps:auth_required_application")
    status, document = probe(f"ws://{server.base}/ws/")
    assert status == 3 and document["overall"] == "INCONCLUSIVE"
    assert "--cookie" in document["reason"]


@pytest.mark.daphne
def test_with_the_cookie_it_is_safe_and_the_cookie_is_never_printed(daphne_factory):
    server = daphne_factory("tests.probe_apps:auth_required_application")
    status, document = probe(f"ws://{server.base}/ws/", "--cookie", SESSION_COOKIE)
    assert status == 0 and document["cookie"] is True
    assert SESSION_COOKIE.split("=")[1] not in json.dumps(document)
    out = StringIO()
    call_command("wsguard_probe", f"ws://{server.base}/ws/", "--cookie", SESSION_COOKIE, stdout=out)
    assert "cookie:   yes" in out.getvalue()
    assert SESSION_COOKIE.split("=")[1] not in out.getvalue()
    assert SESSION_COOKIE.split("=")[1] not in server.log()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback server that accepts connections and never answers."""
    sock = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(sock.accept()[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def test_a_server_that_never_answers_times_out_and_is_inconclusive(silent_server):
    status, document = probe(f"ws://127.0.0.1:{silent_server}/ws/", "--timeout", "0.5", "--concurrency", "16")
    assert status == 3 and document["overall"] == "INCONCLUSIVE"
    assert {row["outcome"] for row in document["rows"]} == {"timeout"}


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def tls_refusing_server(tmp_path: Path) -> Iterator[int]:
    """A loopback TLS server with a self-signed certificate that answers 403 to every request."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(tmp_path))
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True) as tls:
            tls.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                head += chunk
            tls.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = sock.accept()
                conn.settimeout(5)
                threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    sock.close()


def test_wss_verifies_the_certificate_unless_insecure(tls_refusing_server):
    url = f"wss://127.0.0.1:{tls_refusing_server}/ws/"
    status, document = probe(url)
    assert status == 1 and {row["outcome"] for row in document["rows"]} == {"connection-error"}
    assert "CERTIFICATE_VERIFY_FAILED" in document["rows"][0]["detail"]
    status, document = probe(url, "--insecure")
    assert status == 3 and {row["outcome"] for row in document["rows"]} == {"forbidden"}
    assert document["trusted_origin"] == f"https://127.0.0.1:{tls_refusing_server}"


def test_nothing_listening_is_a_connection_error():
    status, document = probe(f"ws://127.0.0.1:{free_port()}/ws/", "--timeout", "2")
    assert status == 1 and document["overall"] == "ERROR"
    assert {row["outcome"] for row in document["rows"]} == {"connection-error"}


@pytest.mark.parametrize(
    "args",
    [
        ["http://127.0.0.1/"],
        ["ws://127.0.0.1/", "--concurrency", str(MAX_CONCURRENCY + 1)],
        ["ws://127.0.0.1/", "--concurrency", "0"],
        ["ws://127.0.0.1/", "--timeout", "0"],
        ["ws://127.0.0.1/", "--header", "Origin: https://a.example"],
        ["ws://127.0.0.1/", "--cookie", "a=b", "--header", "Cookie: c=d"],
    ],
)
def test_usage_errors_are_command_errors(args):
    with pytest.raises(CommandError):
        call_command("wsguard_probe", *args, stdout=StringIO())
