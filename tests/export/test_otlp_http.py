"""otelmetrics.export.otlp_http, the HTTP/1.1 client of the OTLP/HTTP exporter, against
raw-socket servers on the loopback that answer byte for byte as each test scripts it:
chunked bodies with trailers, bodies ended by the connection, HTTP/1.0, interim 1xx
answers, oversized or garbage heads, a kept-alive connection closed between requests,
servers that drip, IPv6; and the endpoint reader it relies on (``split_endpoint``)
against ``urllib.parse.urlsplit``."""
import socket
import struct
import sys
import threading
import time
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otelmetrics.export import otlp_settings
from otelmetrics.export import otlp_protocol as proto
from otelmetrics.export.otlp_http import MAX_HEAD_BYTES, MAX_HEADERS, MAX_RESPONSE_BYTES, HttpTransport
import faulty_servers
from faulty_servers import RawServer, dripping

PB = {"content-type": "application/x-protobuf", "user-agent": "otelmetrics/test"}
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def transport(url, **settings):
    return HttpTransport(otlp_settings.OTLPSettings(endpoint=url, **settings), tls_fall_back=False)


def read_message(conn, seen=None):
    """One request, read whole: (head lines, body), or None when the client left."""
    message = faulty_servers.read_message(conn)
    if message is not None and seen is not None:
        seen.append(message)
    return message


def answering(*answers, then_close=False, seen=None):
    """A server script: each request on a connection gets the next answer (bytes, sent
    as they are); after the last one the connection is closed, or kept until the client
    leaves unless ``then_close``."""
    def script(conn):
        for answer in answers:
            if read_message(conn, seen) is None:
                return
            conn.sendall(answer)
        if not then_close:
            while read_message(conn, seen) is not None:
                conn.sendall(OK)
    return script


def send(url, times=1, body=b"\x0a\x00", timeout=5, headers=PB):
    t = transport(url)
    try:
        return [t.send(body, headers, timeout) for _ in range(times)]
    finally:
        t.close()


def malformed(outcome):
    return outcome.kind == proto.RETRYABLE and "malformed response" in outcome.detail


# ---------------------------------------------------------------- the request

def test_the_request_is_http_1_1_with_host_length_and_our_headers():
    seen = []
    body = bytes(range(256)) * 1000      # 256 kB: sent in pieces
    with RawServer(answering(OK, seen=seen)) as server:
        headers = dict(PB, authorization="Bearer t")
        assert send(server.url, body=body, headers=headers) == [proto.Outcome(proto.DELIVERED, "")]
    (lines, got), = seen
    assert got == body
    assert lines[0] == "POST /v1/metrics HTTP/1.1"
    assert lines[1:4] == ["Host: 127.0.0.1:%d" % server.port, "Accept-Encoding: identity",
                          "Content-Length: %d" % len(body)]
    assert lines[4:] == ["content-type: application/x-protobuf", "user-agent: otelmetrics/test",
                         "authorization: Bearer t"]


def test_the_query_is_sent_and_the_host_header_names_a_port_only_when_it_is_not_the_schemes():
    seen = []
    with RawServer(answering(OK, seen=seen)) as server:
        assert send(server.url + "?tenant=a")[0].kind == proto.DELIVERED
    assert seen[0][0][0] == "POST /v1/metrics?tenant=a HTTP/1.1"
    assert transport("http://collector/v1/metrics")._host_header == "collector"
    assert transport("http://collector:80/v1/metrics")._host_header == "collector"
    assert transport("http://collector:4318/v1/metrics")._host_header == "collector:4318"
    # An IPv6 address without a port: port 80 (http.client read the last group as the port).
    ipv6 = transport("http://[::1]/v1/metrics")
    assert (ipv6._host, ipv6._port, ipv6._host_header) == ("::1", 80, "[::1]")


@pytest.mark.parametrize("headers", [{"x-a": "1\r\nx-b: 2"}, {"x a": "1"}, {"x:a": "1"}, {"x-a": "1\nb"},
                                     {"x-a": "\u20ac"}, {"x-a": "1\x00"}])
def test_a_header_that_cannot_be_sent_fails_the_request_for_good_and_sends_nothing(headers):
    """It was a RETRYABLE "connection error": the request was retried and kept for ever."""
    seen = []
    with RawServer(answering(OK, seen=seen)) as server:
        (got,) = send(server.url, headers=dict(PB, **headers))
        assert got.kind == proto.PERMANENT and "cannot be sent" in got.detail
        assert server.connections == 0 and seen == []


def test_configured_framing_headers_are_not_sent_twice():
    seen = []
    with RawServer(answering(OK, seen=seen)) as server:
        assert send(server.url, headers=dict(PB, **{"content-length": "999", "transfer-encoding": "x"}))[0].kind \
            == proto.DELIVERED
    lines = seen[0][0]
    assert [line for line in lines if line.lower().startswith(("content-length", "transfer-encoding"))] == \
        ["Content-Length: 2"]


# ---------------------------------------------------------------- how a response body is framed

def test_a_chunked_body_with_extensions_and_trailers_keeps_the_connection():
    answer = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n")
    with RawServer(answering(answer)) as server:
        first, second = send(server.url, times=2)
        assert first == proto.Outcome(proto.PERMANENT, "HTTP 400 Bad Request: hello world")
        assert second.kind == proto.DELIVERED
        assert server.connections == 1


def test_a_body_ended_by_the_connection():
    answer = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nno length given"
    with RawServer(answering(answer, then_close=True)) as server:
        first, second = send(server.url, times=2)
        assert first == proto.Outcome(proto.PERMANENT, "HTTP 400 Bad Request: no length given")
        assert second == first
        assert server.connections == 2


@pytest.mark.parametrize("answer, reused", [
    (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),                  # 1.0: closed after
    (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: x, Close\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", False),           # more than it said
    (b"HTTP/1.1 204 No Content\r\n\r\n", True),                                # no body, no length
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc", True),
])
def test_http_1_0_and_connection_close_end_the_connection(answer, reused):
    with RawServer(answering(answer)) as server:
        first, second = send(server.url, times=2)
        assert first.kind == second.kind == proto.DELIVERED
        assert server.connections == (1 if reused else 2)


def test_interim_1xx_answers_are_skipped():
    answer = (b"HTTP/1.1 100 Continue\r\n\r\n"
              b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
              b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n")
    with RawServer(answering(answer)) as server:
        first, second = send(server.url, times=2)
        assert first == proto.Outcome(proto.RETRYABLE, "HTTP 503 Service Unavailable", 7.0)
        assert second.kind == proto.DELIVERED and server.connections == 1


def test_header_names_are_case_insensitive_and_a_repeated_one_gives_its_last_value():
    answer = (b"HTTP/1.1 429 Too Many Requests\r\nRETRY-AFTER: 3\r\nretry-after:  9 \r\n"
              b"X-Folded: a\r\n  b\r\nContent-Length: 0\r\n\r\n")
    with RawServer(answering(answer)) as server:
        assert send(server.url)[0] == proto.Outcome(proto.RETRYABLE, "HTTP 429 Too Many Requests", 9.0)


def test_a_response_body_over_the_bound_is_cut_when_chunked_too():
    big = b"y" * (MAX_RESPONSE_BYTES // 2)
    answer = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
              + b"".join(b"%x\r\n%s\r\n" % (len(big), big) for _ in range(3)) + b"0\r\n\r\n")
    with RawServer(answering(answer)) as server:
        first, second = send(server.url, times=2)
        assert first == proto.Outcome(proto.PERMANENT, "HTTP 400 Bad Request: " + "y" * 200)
        assert second == first and server.connections == 2   # the first one was dropped


# ---------------------------------------------------------------- malformed answers: RETRYABLE, never raised

@pytest.mark.parametrize("answer", [
    b"SSH-2.0-OpenSSH_9.6\r\n",
    b"HTTP/2 200\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n folded first: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",                     # then closed
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",           # then closed
    b"HTTP/1.1 200 OK\r\nContent-Le",                                          # then closed
])
def test_a_malformed_answer_is_a_retryable_connection_error(answer):
    with RawServer(answering(answer, then_close=True)) as server:
        (got,) = send(server.url)
    assert malformed(got), got


def test_no_answer_at_all_is_a_retryable_connection_error():
    with RawServer(answering(b"", then_close=True)) as server:
        (got,) = send(server.url)
    assert got.kind == proto.RETRYABLE and "without a response" in got.detail


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 " + b"x" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n",                  # a status line
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n",     # one header
    b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1234567890\r\n" * 5000 + b"\r\n",            # many small ones
    b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * (MAX_HEADERS + 1) + b"Content-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"0" * (MAX_HEAD_BYTES + 10) + b"1\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + b"X-T: 1234567890\r\n" * 5000 + b"\r\n",
])
def test_an_oversized_head_is_refused_without_reading_it_all(head):
    with RawServer(answering(head)) as server:
        (got,) = send(server.url)
    assert malformed(got), got


def test_a_head_within_the_limits_is_read():
    head = b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * (MAX_HEADERS - 1) + b"Content-Length: 0\r\n\r\n"
    with RawServer(answering(head)) as server:
        assert send(server.url)[0].kind == proto.DELIVERED


def test_an_endless_head_costs_bounded_memory_and_no_more_than_the_deadline():
    def endless(conn):
        if read_message(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while True:
                conn.sendall(b"X-Again: and again\r\n" * 1000)

    with RawServer(endless) as server:
        start = time.monotonic()
        (got,) = send(server.url, timeout=5)
        assert malformed(got) and time.monotonic() - start < 2


# ---------------------------------------------------------------- the kept-alive connection and its one retry

@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_kept_alive_connection_the_server_closed_between_requests_is_retried_once(how):
    def once(conn):
        if read_message(conn):
            conn.sendall(OK)                          # keep-alive, then gone
            time.sleep(0.1)
            if how == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with RawServer(once) as server:
        t = transport(server.url)
        try:
            assert t.send(b"a", PB, 5).kind == proto.DELIVERED
            time.sleep(0.3)
            assert t.send(b"b", PB, 5).kind == proto.DELIVERED
            assert server.connections == 2        # the one the server closed, and a fresh one
        finally:
            t.close()


def test_a_fresh_connection_that_fails_is_not_retried():
    with RawServer(answering(b"", then_close=True)) as server:
        (got,) = send(server.url)
        assert got.kind == proto.RETRYABLE and server.connections == 1


# ---------------------------------------------------------------- the deadline and abort

@pytest.mark.parametrize("script", [
    dripping(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"1\r\nx\r\n"),
    dripping(b"", b"HTTP/1.1 100 Continue\r\n\r\n"),
    dripping(b"HTTP/1.1 200 OK\r\n\r\n", b"x"),
], ids=["chunks", "interim answers", "a body until close"])
def test_a_dripping_server_cannot_stretch_a_try(script):
    with RawServer(script) as server:
        start = time.monotonic()
        (got,) = send(server.url, timeout=1)
        took = time.monotonic() - start
    assert got.kind == proto.RETRYABLE and 0.9 < took < 2, (got, took)


def test_a_slow_reader_cannot_stretch_the_sending_of_a_large_body():
    def never_reads(conn):
        time.sleep(5)

    with RawServer(never_reads) as server:
        start = time.monotonic()
        (got,) = send(server.url, body=b"x" * (32 << 20), timeout=1)
        took = time.monotonic() - start
    assert got.kind == proto.RETRYABLE and 0.9 < took < 2, (got, took)


def test_abort_from_another_thread_wakes_a_blocked_send():
    release = threading.Event()

    def hang(conn):
        read_message(conn)
        release.wait(10)

    with RawServer(hang) as server:
        t = transport(server.url)
        threading.Timer(0.3, t.abort).start()
        start = time.monotonic()
        got = t.send(b"a", PB, 10)
        took = time.monotonic() - start
        release.set()
        t.close()
    assert got.kind == proto.RETRYABLE and took < 1.5, (got, took)


# ---------------------------------------------------------------- name lookup

class Resolver:
    """socket.getaddrinfo, with every name (not an IP address) held until ``release`` and
    then answered as 127.0.0.1, or failing with ``error``; the names asked, in order."""

    def __init__(self, monkeypatch, error=None):
        self.real = socket.getaddrinfo
        self.release = threading.Event()
        self.error = error
        self.names = []
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        if not flags & socket.AI_NUMERICHOST:
            self.names.append(host)
            self.release.wait(30)
            if self.error is not None:
                raise self.error
            host = "127.0.0.1"
        return self.real(host, port, family, type, proto, flags)


def test_a_lookup_that_does_not_answer_costs_a_try_its_timeout_and_later_tries_wait_for_it(monkeypatch):
    resolver = Resolver(monkeypatch)
    with RawServer(answering(OK)) as server:
        t = transport("http://collector.example:%d/v1/metrics" % server.port)
        try:
            for _ in range(2):
                start = time.monotonic()
                got = t.send(b"a", PB, 0.3)
                took = time.monotonic() - start
                assert got.kind == proto.RETRYABLE and "lookup" in got.detail and 0.25 < took < 1.5, (got, took)
            resolver.release.set()
            assert t.send(b"a", PB, 5).kind == proto.DELIVERED
        finally:
            t.close()
    assert resolver.names == [b"collector.example"]   # one lookup served the three tries


def test_abort_wakes_a_send_waiting_for_a_lookup(monkeypatch):
    resolver = Resolver(monkeypatch)
    t = transport("http://collector.example:4318/v1/metrics")
    threading.Timer(0.3, t.abort).start()
    start = time.monotonic()
    got = t.send(b"a", PB, 10)
    took = time.monotonic() - start
    resolver.release.set()
    assert got.kind == proto.RETRYABLE and took < 1.5, (got, took)


def test_a_failed_lookup_is_a_retryable_error_and_the_next_try_looks_up_again(monkeypatch):
    resolver = Resolver(monkeypatch, error=socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    resolver.release.set()
    t = transport("http://collector.example:4318/v1/metrics")
    got = [t.send(b"a", PB, 5) for _ in range(2)]
    assert [g.kind for g in got] == [proto.RETRYABLE] * 2 and "not known" in got[0].detail, got
    assert resolver.names == [b"collector.example"] * 2


def test_an_ip_address_is_not_looked_up(monkeypatch):
    resolver = Resolver(monkeypatch)
    with RawServer(answering(OK)) as server:
        (got,) = send(server.url)
    assert got.kind == proto.DELIVERED and resolver.names == []


# ---------------------------------------------------------------- IPv6

def _ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_an_ipv6_literal_endpoint():
    seen = []
    with RawServer(answering(OK, seen=seen), host="::1") as server:
        assert server.url.startswith("http://[::1]:")
        first, second = send(server.url, times=2)
        assert first.kind == second.kind == proto.DELIVERED and server.connections == 1
    assert seen[0][0][1] == "Host: [::1]:%d" % server.port


# ---------------------------------------------------------------- reading an endpoint as urlsplit does

def urlsplit_reads(url):
    try:
        parts = urlsplit(url)
    except ValueError:
        return "error"
    try:
        port = parts.port
    except ValueError:
        return ("bad port", parts.path)
    return parts.scheme, parts.hostname, port, parts.path, parts.query


def ours_reads(url):
    try:
        scheme, netloc, path, query = otlp_settings._split(url)
    except ValueError:
        return "error"
    try:
        host, port = otlp_settings._host_port(netloc)
    except ValueError:
        return ("bad port", path)
    return scheme, host, port, path, query


PIECES = ["http", "https", "HTTP", ":", "//", "/", "[", "]", "@", "?", "#", "%", ".", "0", "1", "9", "65536",
          "80", "a", "Z", "v", "::1", "fe80::1%eth0", "127.0.0.1", "user:pw@", "/v1/metrics", " ", "\t", "\n",
          "\x00", "\u00e9", "\uff03", "+"]


@pytest.mark.skipif(sys.version_info < (3, 11, 4), reason="the reference is urlsplit as of 3.11.4, "
                    "which checks a bracketed host and reads a port as ASCII digits only")
@given(st.lists(st.sampled_from(PIECES), max_size=12).map("".join))
def test_split_endpoint_reads_a_url_as_urlsplit_does(url):
    assert ours_reads(url) == urlsplit_reads(url)


@pytest.mark.parametrize("url, expected", [
    ("http://127.0.0.1:4318/v1/metrics", ("http", "127.0.0.1", 4318, "/v1/metrics")),
    ("HTTPS://Collector.Example/v1/metrics?x=1#frag", ("https", "collector.example", None, "/v1/metrics?x=1")),
    ("http://[::1]:4318", ("http", "::1", 4318, "/")),
    ("http://u:p@[fe80::1%eth0]/v1/metrics", ("http", "fe80::1%eth0", None, "/v1/metrics")),
    (" \thttp://h\n:80/p", ("http", "h", 80, "/p")),
])
def test_split_endpoint(url, expected):
    assert tuple(otlp_settings.split_endpoint(url)) == expected


@pytest.mark.parametrize("url, message", [
    ("ftp://h/v1/metrics", "scheme"), ("http:///v1/metrics", "no host"), ("http://h:99999/", "Port out of range"),
    ("http://h:x/", "Port could not be cast"), ("http://[::1/", "Invalid IPv6 URL"),
    ("http://[1.2.3.4]/", "not an IPv6 address"), ("http://[nonsense]/", "not an IPv6 address"),
    ("http://a\uff03b/", "NFKC"),
])
def test_split_endpoint_refuses(url, message):
    with pytest.raises(ValueError, match=message):
        otlp_settings.split_endpoint(url)
