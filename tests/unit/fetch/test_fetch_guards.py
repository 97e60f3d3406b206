"""check_url and the address table: pure, no DNS, no network."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_gateway.connectors.http_fetch.settings import HttpFetchSettings
from mcp_gateway.connectors.http_fetch.urls import check_url, header_never_sent, parse_inet_aton, sanitize_headers
from mcp_gateway.guards import GuardDenied
from mcp_gateway.guards.addresses import BLOCKED_V4, classify
from tests.support.corpus import load_corpus

LISTED = HttpFetchSettings(enabled=True, allowed_domains=["example.com", "*.example.com"])
STAR = HttpFetchSettings(enabled=True, allowed_domains=["*"])


CASES = load_corpus("ssrf_block.txt")
# Public names that only the allowlist refuses: with "*" they are (by definition) allowed
# hosts, and the worker's resolution check is what stands between them and the network.
ALLOWLIST_ONLY = {"https://example.com.evil.net/"}


def test_attack_file_is_not_empty():
    assert len(CASES) >= 30


@pytest.mark.parametrize("url", CASES)
def test_attack_refused_with_listed_domains(url):
    with pytest.raises(GuardDenied) as e:
        check_url(url, LISTED)
    assert e.value.reason


@pytest.mark.parametrize("url", [c for c in CASES if c not in ALLOWLIST_ONLY])
def test_attack_refused_with_star(url):
    with pytest.raises(GuardDenied):
        check_url(url, STAR)


def test_allowlist_only_cases_pass_star_but_are_public_names():
    for url in ALLOWLIST_ONLY:
        t = check_url(url, STAR)
        assert t.ip is None and t.host == "example.com.evil.net"


@pytest.mark.parametrize("url,rule", [
    ("http://localhost/", "loopback"),
    ("http://127.1/", "127.0.0.0/8"),
    ("http://2852039166/", "metadata"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://example.com@127.0.0.1/", "userinfo"),
    ("gopher://127.0.0.1:6379/_INFO", "scheme"),
    ("https://еxample.com/", "homograph"),
    ("http://metadata.google.internal/", "metadata"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
])
def test_reason_names_the_rule(url, rule):
    with pytest.raises(GuardDenied) as e:
        check_url(url, STAR)
    assert rule in e.value.reason


def test_homograph_is_not_example_com():
    # Even if homograph detection did not exist, the ASCII form would not match example.com.
    with pytest.raises(GuardDenied) as e:
        check_url("https://еxample.com/", LISTED)
    assert "homograph" in e.value.reason or "xn--" in e.value.reason


@pytest.mark.parametrize("url", [
    "https://example.com/", "https://EXAMPLE.com./a?b=1#frag", "http://www.example.com:443/",
    "HTTPS://a.b.example.com/x", "https://ｅｘａｍｐｌｅ.com/",
])
def test_allowed(url):
    t = check_url(url, LISTED)
    assert t.host.endswith("example.com")
    assert "#" not in t.url


@pytest.mark.parametrize("url,reason", [
    ("https://example.com.evil.net/", "allowed_domains"),
    ("https://notexample.com/", "allowed_domains"),
    ("https://example.com:8443/", "port 8443"),
    ("http://example.com\\@127.0.0.1/", "backslash"),
    ("http://example.com /", "whitespace"),
    ("http://example.com\t/", "control"),
    ("http://exa\nmple.com/", "control"),
    ("http://example.com\x00/", "control"),
    ("http:example.com/", "scheme://"),
    ("http:/example.com/", "scheme://"),
    ("http:///example.com/", "empty host"),
    ("http://exa%6dple.com/", "percent"),
    ("http://[::1%25lo]/", "percent"),
    ("http://example.com:99999/", "out of range"),
    ("http://example.com:8o/", "not a number"),
    ("javascript:alert(1)", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("data:text/plain,hi", "scheme"),
    ("//example.com/", "no scheme"),
    ("http://example.com../", "label"),
    ("http://exam_ple!.com/", "not allowed in a host"),
    ("http://1.2.3.256/", "not a valid IPv4"),
    ("http://example.08/", "not a valid IPv4"),
    ("http://a.localhost/", "loopback"),
    ("http://metadata/", "metadata"),
    ("http://metadata.goog./", "metadata"),
    ("http://ex\u00adample.com/", "invisible"),
    ("http://example.com\u200b/", "invisible"),
])
def test_refused_rules(url, reason):
    with pytest.raises(GuardDenied) as e:
        check_url(url, LISTED)
    assert reason in e.value.reason, e.value.reason


def test_wildcard_does_not_match_bare_suffix():
    s = HttpFetchSettings(enabled=True, allowed_domains=["*.example.org"])
    assert check_url("https://a.example.org/", s).host == "a.example.org"
    with pytest.raises(GuardDenied):
        check_url("https://example.org/", s)
    with pytest.raises(GuardDenied):
        check_url("https://badexample.org/", s)


def test_ip_literal_needs_star_or_exact_entry():
    with pytest.raises(GuardDenied, match="allowed_domains"):
        check_url("http://93.184.215.14/", LISTED)
    assert check_url("http://93.184.215.14/", STAR).host == "93.184.215.14"
    exact = HttpFetchSettings(enabled=True, allowed_domains=["93.184.215.14", "2606:4700::1111"])
    decimal = int(ipaddress.IPv4Address("93.184.215.14"))
    assert check_url(f"http://{decimal}/", exact).host == "93.184.215.14"
    assert check_url("http://[2606:4700:0::1111]/", exact).host == "2606:4700::1111"


def test_allow_internal_cidrs_opens_literals_but_not_metadata():
    s = HttpFetchSettings(enabled=True, allowed_domains=["*"],
                          allow_internal_cidrs=["10.0.0.0/8", "169.254.0.0/16", "127.0.0.0/8"])
    assert check_url("http://10.1.2.3/", s).host == "10.1.2.3"
    assert check_url("http://0x7f.1/", s).host == "127.0.0.1"
    for url in ("http://169.254.169.254/", "http://2852039166/", "http://[::ffff:a9fe:a9fe]/",
                "http://[64:ff9b::a9fe:a9fe]/", "http://metadata.google.internal/"):
        with pytest.raises(GuardDenied, match="metadata"):
            check_url(url, s)
    with pytest.raises(GuardDenied, match="private"):
        check_url("http://192.168.1.1/", s)
    with pytest.raises(GuardDenied, match="localhost"):
        check_url("http://localhost/", s)  # names stay refused: open the literal instead


# --- addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize("ip,rule", [
    ("127.0.0.1", "loopback"), ("0.1.2.3", "this-network"), ("10.0.0.1", "private"),
    ("100.127.255.255", "carrier-grade"), ("169.254.1.1", "link-local"), ("172.16.0.1", "private"),
    ("192.0.0.8", "IETF"), ("192.0.2.1", "documentation"), ("192.88.99.1", "6to4 relay"),
    ("192.168.0.1", "private"), ("198.19.0.1", "benchmarking"), ("198.51.100.1", "documentation"),
    ("203.0.113.9", "documentation"), ("224.0.0.1", "multicast"), ("250.1.1.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("::", "unspecified"), ("::1", "loopback"), ("fd00::1", "unique local"), ("fe80::1", "link-local"),
    ("fec0::1", "site-local"), ("ff02::1", "multicast"), ("2001:db8::1", "documentation"),
    ("100::1", "discard"), ("::ffff:10.0.0.1", "private"), ("::10.0.0.1", "IPv4-compatible"),
    ("64:ff9b::7f00:1", "loopback"), ("64:ff9b:1::1", "local-use NAT64"),
    ("2002:7f00:1::1", "loopback"), ("2002:c0a8:101::", "private"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo"),  # client 127.0.0.1 (inverted), server 65.54.227.120
    ("fd00:ec2::254", "metadata"), ("100.100.100.200", "metadata"), ("169.254.169.254", "metadata"),
    ("::ffff:100.100.100.200", "metadata"), ("2002:a9fe:a9fe::1", "metadata"),
    ("fe80::1%1", "scoped"), ("4000::1", "global unicast"),
])
def test_classify_blocks(ip, rule):
    reason = classify(ip, ())
    assert reason is not None and rule in reason, reason


@pytest.mark.parametrize("ip", ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700::1111",
                                "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
                                "2a00:1450:4001::1"])
def test_classify_allows_public(ip):
    assert classify(ip, ()) is None


def test_teredo_embedded_client_is_unwrapped():
    # Server 8.8.8.8, client 127.0.0.1 (stored inverted): the client address is reported.
    client = 0xFFFFFFFF ^ int(ipaddress.IPv4Address("127.0.0.1"))
    addr = ipaddress.IPv6Address((0x20010000 << 96) | (int(ipaddress.IPv4Address("8.8.8.8")) << 64) | client)
    reason = classify(addr, ())
    assert reason is not None and "Teredo" in reason


def test_allow_internal_cidrs():
    assert classify("10.1.2.3", ["10.0.0.0/8"]) is None
    assert classify("::ffff:10.1.2.3", ["10.0.0.0/8"]) is None
    assert classify("10.1.2.3", ["10.0.0.0/16"]) is not None
    assert classify("fd12::1", ["fd12::/16"]) is None
    assert "metadata" in classify("169.254.169.254", ["0.0.0.0/0"])
    assert "metadata" in classify("fd00:ec2::254", ["::/0"])
    assert "metadata" in classify("100.100.100.200", ["100.64.0.0/10"])
    assert classify("127.0.0.2", ["127.0.0.1/32"]) is not None


def test_table_is_explicit():
    assert len(BLOCKED_V4) >= 16


# --- inet_aton ----------------------------------------------------------------------------


@pytest.mark.parametrize("text,ip", [
    ("127.1", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
    ("017700000001", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("2852039166", "169.254.169.254"),
    ("0xA9.0xFE.0xA9.0xFE", "169.254.169.254"), ("0", "0.0.0.0"), ("0x", "0.0.0.0"),
    ("10.0x10203", "10.1.2.3"), ("1.2.3.4", "1.2.3.4"), ("4294967295", "255.255.255.255"),
])
def test_inet_aton(text, ip):
    assert str(parse_inet_aton(text)) == ip


@pytest.mark.parametrize("text", ["4294967296", "1.2.3.4.5", "08", "1.256.1.1", "0x1g", "1..2", "",
                                  "1.2.3.256"])
def test_inet_aton_rejects(text):
    assert parse_inet_aton(text) is None


# --- headers ------------------------------------------------------------------------------

DEFAULT_ALLOWED = HttpFetchSettings().request_headers

# Credentials, client-address and proxy-trust claims, client certificates, hop-by-hop and
# framing headers, and names that merely look like any of them: none is ever sent.
NEVER = [
    "Authorization", "aUtHoRiZaTiOn", "Proxy-Authorization", "COOKIE", "Set-Cookie", "x-api-key",
    "X-API-KEY", "Api-Key", "X-Auth-Token", "X-Amz-Security-Token", "X-My-Secret", "x_api_key",
    "X-Session-Id", "Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host", "Content-Length", "User-Agent", "X-Forwarded-For",
    "X-Real-IP", "Forwarded", "X-HTTP-Method-Override", "Private-Token", "X-Vault-Token",
    "X-Original-Host", "Client-IP", "X-Remote-Addr", "Via", "X-Envoy-External-Address",
    "X-Envoy-Internal", "DPoP", "X-Client-Cert", "X-SSL-Client-Cert", "SSL-Client-Cert",
    "X-Forwarded-Client-Cert", "True-Client-IP", "X-Amzn-Trace-Id", "CF-Connecting-IP",
    "Fastly-Client-IP", "X-Host", "Sec-Fetch-Site", "Accept-Encoding",
]


@pytest.mark.parametrize("name", NEVER)
def test_header_never_sent_even_if_configured(name):
    assert header_never_sent(name)
    kept, dropped = sanitize_headers({name: "v"}, [name.lower()])
    assert kept == {} and dropped == [name]
    with pytest.raises(ValueError, match="never sends"):
        HttpFetchSettings(request_headers=[name])


@pytest.mark.parametrize("name", ["X-Request-Id", "Referer", "X-Custom", "Origin", "X-Debug", "Content-Type"])
def test_header_outside_the_allowlist_dropped(name):
    kept, dropped = sanitize_headers({name: "v", "Accept": "text/html"}, DEFAULT_ALLOWED)
    assert kept == {"Accept": "text/html"} and dropped == [name]


@pytest.mark.parametrize("name", ["Accept", "accept-language", "If-None-Match", "If-Modified-Since", "Range",
                                  "Cache-Control", "If-Range"])
def test_header_on_the_allowlist_kept(name):
    assert sanitize_headers({name: "v"}, DEFAULT_ALLOWED) == ({name: "v"}, [])


def test_operator_extends_the_allowlist():
    s = HttpFetchSettings(request_headers=[*DEFAULT_ALLOWED, "X-GitHub-Api-Version"])
    assert "x-github-api-version" in s.request_headers
    assert sanitize_headers({"X-GITHUB-API-VERSION": "2022-11-28"}, s.request_headers)[0]


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,40}", fullmatch=True))
def test_only_allowlisted_names_pass(name):
    kept, _ = sanitize_headers({name: "v"}, DEFAULT_ALLOWED)
    assert set(kept) <= {n for n in (name,) if n.lower() in DEFAULT_ALLOWED}


@pytest.mark.parametrize("value", ["text/html\r\nX-Evil: 1", "tëxt", "a\x00b", "a\x7fb"])
def test_header_value_injection_refused(value):
    with pytest.raises(GuardDenied, match="control or non-ASCII"):
        sanitize_headers({"Accept": value}, DEFAULT_ALLOWED)


@pytest.mark.parametrize("value", [" text/html", "text/html ", "\ttext/html", "text/html\t", " "])
def test_header_value_with_surrounding_whitespace_refused(value):
    with pytest.raises(GuardDenied, match="leading or trailing whitespace"):
        sanitize_headers({"Accept": value}, DEFAULT_ALLOWED)


# --- property tests: every spelling of an internal address is refused ---------------------

INTERNAL_V4 = [
    "127.0.0.1", "127.255.255.254", "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.255",
    "192.168.1.1", "169.254.169.254", "169.254.0.1", "100.64.0.1", "100.100.100.200", "0.0.0.0",
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "192.0.0.1", "198.18.0.1",
    "192.0.2.1", "198.51.100.7", "203.0.113.200",
]


def _num(n: int, style: str, width_pad: int) -> str:
    if style == "dec":
        return str(n)
    if style == "oct":
        return "0" + "0" * width_pad + format(n, "o")
    if style == "hex":
        return "0x" + "0" * width_pad + format(n, "x")
    return "0X" + "0" * width_pad + format(n, "X")


@st.composite
def ipv4_spellings(draw):
    ip = ipaddress.IPv4Address(draw(st.sampled_from(INTERNAL_V4)))
    b = ip.packed
    nparts = draw(st.integers(1, 4))
    if nparts == 1:
        values = [int(ip)]
    elif nparts == 2:
        values = [b[0], int.from_bytes(b[1:], "big")]
    elif nparts == 3:
        values = [b[0], b[1], int.from_bytes(b[2:], "big")]
    else:
        values = list(b)
    style = st.sampled_from(["dec", "oct", "hex", "HEX"])
    parts = [_num(v, draw(style), draw(st.integers(0, 2))) for v in values]
    host = ".".join(parts)
    if draw(st.booleans()):
        host += "."
    return host


@st.composite
def ipv6_spellings(draw):
    v4 = ipaddress.IPv4Address(draw(st.sampled_from(INTERNAL_V4)))
    n = int(v4)
    form = draw(st.sampled_from(["mapped", "mapped-dotted", "compat", "compat-dotted", "nat64", "6to4",
                                 "full-mapped", "native"]))
    hi, lo = n >> 16, n & 0xFFFF
    if form == "mapped":
        text = f"::ffff:{hi:x}:{lo:x}"
    elif form == "mapped-dotted":
        text = f"::ffff:{v4}"
    elif form == "compat":
        text = f"::{hi:x}:{lo:x}"
    elif form == "compat-dotted":
        text = f"::{v4}"
    elif form == "nat64":
        text = f"64:ff9b::{hi:x}:{lo:x}"
    elif form == "6to4":
        text = f"2002:{hi:x}:{lo:x}::{draw(st.integers(0, 0xffff)):x}"
    elif form == "full-mapped":
        text = f"0:0:0:0:0:ffff:{hi:04x}:{lo:04x}"
    else:
        text = draw(st.sampled_from(["::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1",
                                     "fec0::1", "2001:db8::1", "0:0:0:0:0:0:0:1", "fe80::abcd:1"]))
    if draw(st.booleans()):
        text = text.upper()
    return f"[{text}]"


def _vary_case(draw, s: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c for c in s)


@settings(max_examples=400, deadline=None)
@given(host=st.one_of(ipv4_spellings(), ipv6_spellings()),
       scheme=st.sampled_from(["http", "https", "HTTP", "hTtPs"]),
       port=st.sampled_from(["", ":80", ":443", ":0443"]), data=st.data())
def test_internal_spellings_always_refused(host, scheme, port, data):
    if not host.startswith("["):
        host = _vary_case(data.draw, host)
    url = f"{scheme}://{host}{port}/"
    for s in (STAR, LISTED):
        with pytest.raises(GuardDenied):
            check_url(url, s)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_check_url_never_crashes(junk):
    for url in (junk, "http://" + junk, "https://example.com/" + junk, "http://" + junk + "/"):
        try:
            t = check_url(url, STAR)
        except GuardDenied:
            continue
        # Whatever passed is well-formed and carries no internal literal.
        assert t.scheme in ("http", "https")
        if t.ip is not None:
            assert classify(t.ip, ()) is None


V6_OPEN = HttpFetchSettings(enabled=True, allowed_domains=["*"], allow_internal_cidrs=["::/0"])


@settings(max_examples=300, deadline=None)
@given(host=ipv6_spellings(), scheme=st.sampled_from(["http", "https"]))
def test_carried_internal_ipv4_refused_with_ipv6_all_open(host, scheme):
    from ipaddress import IPv6Address

    from mcp_gateway.guards.addresses import embedded_ipv4
    addr = IPv6Address(host[1:-1])
    if embedded_ipv4(addr) is None:
        return  # a native IPv6 address: "::/0" opens the internal ones, as the operator asked
    with pytest.raises(GuardDenied):
        check_url(f"{scheme}://{host}/", V6_OPEN)
