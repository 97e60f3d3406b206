"""Property tests: an IPv6 form that carries an IPv4 address is judged only as that IPv4 address.

Every embedding (IPv4-mapped, IPv4-translated, IPv4-compatible, NAT64, local-use NAT64,
6to4, Teredo server and client), every IPv4 address, and every `allow_internal_cidrs` made of
IPv4 networks plus IPv6 networks that cover the embedding (up to "::/0"): the verdict is the
embedded IPv4 address's own verdict, metadata is refused first whatever the networks say,
and no IPv6 network ever opens an embedded address.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mcp_gateway.guards.addresses import BLOCKED_V4, METADATA_ADDRESSES, classify, embedded_ipv4

V4_METADATA = sorted(str(a) for a in METADATA_ADDRESSES if a.version == 4)


def embed(v4: IPv4Address, form: str, noise: int) -> IPv6Address:
    """`v4` inside the IPv6 form `form`; `noise` fills the bits the form leaves free."""
    n = int(v4)
    if form == "mapped":
        return IPv6Address((0xFFFF << 32) | n)
    if form == "translated":
        return IPv6Address((0xFFFF << 48) | n)
    if form == "compatible":
        return IPv6Address(n)
    if form == "nat64":
        return IPv6Address((0x0064FF9B << 96) | n)
    if form == "nat64-local":
        return IPv6Address((0x0064FF9B0001 << 80) | n)
    if form == "6to4":
        return IPv6Address((0x2002 << 112) | (n << 80) | (noise & ((1 << 80) - 1)))
    if form == "teredo-server":
        # A public client (8.8.4.4), stored inverted in the low 32 bits.
        return IPv6Address((0x20010000 << 96) | (n << 64) | (0xFFFFFFFF ^ int(IPv4Address("8.8.4.4"))))
    if form == "teredo-client":
        return IPv6Address((0x20010000 << 96) | (int(IPv4Address("8.8.8.8")) << 64) | (0xFFFFFFFF ^ n))
    raise AssertionError(form)


TRANSLATED_FORMS = ["mapped", "translated", "nat64", "nat64-local", "6to4"]  # judged as the IPv4 address
DEPRECATED_FORMS = ["compatible", "teredo-server", "teredo-client"]          # refused whatever it carries
FORMS = TRANSLATED_FORMS + DEPRECATED_FORMS


@st.composite
def ipv4(draw) -> IPv4Address:
    """Any IPv4 address, with extra weight on the blocked ranges and metadata."""
    kind = draw(st.sampled_from(["any", "blocked", "metadata"]))
    if kind == "metadata":
        return IPv4Address(draw(st.sampled_from(V4_METADATA)))
    if kind == "blocked":
        net = draw(st.sampled_from([n for n, _ in BLOCKED_V4]))
        return net[draw(st.integers(0, net.num_addresses - 1))]
    return IPv4Address(draw(st.integers(0, 2**32 - 1)))


@st.composite
def v4_networks(draw) -> list[str]:
    """Random IPv4 networks, some of them covering blocked ranges (what operators open)."""
    nets = []
    for _ in range(draw(st.integers(0, 3))):
        base = draw(ipv4())
        prefix = draw(st.integers(0, 32))
        nets.append(str(IPv4Network(f"{base}/{prefix}", strict=False)))
    return nets


def covering_v6(addr: IPv6Address, draw) -> list[str]:
    """IPv6 networks that all contain `addr`: "::/0", the form's prefix, and random supernets."""
    nets = ["::/0"]
    for _ in range(draw(st.integers(0, 3))):
        prefix = draw(st.integers(0, 128))
        nets.append(str(IPv6Network(f"{addr}/{prefix}", strict=False)))
    return nets


@settings(max_examples=400, deadline=None)
@given(v4=ipv4(), form=st.sampled_from(FORMS), noise=st.integers(0, 2**80 - 1), v4nets=v4_networks(),
       data=st.data())
def test_carried_ipv4_judged_only_as_ipv4(v4, form, noise, v4nets, data):
    assume(not (form == "compatible" and int(v4) <= 1))  # :: and ::1 are native IPv6
    addr = embed(v4, form, noise)
    carried = embedded_ipv4(addr)
    assert carried is not None and v4 in carried[1], (addr, carried)
    v6nets = covering_v6(addr, data.draw)
    verdict = classify(addr, v4nets + v6nets)
    # IPv6 networks change nothing, even "::/0" and the address's own /128.
    assert verdict == classify(addr, v4nets)
    if v4 in METADATA_ADDRESSES:
        assert verdict is not None and verdict.startswith(f"cloud metadata address {v4}"), verdict
    elif form in DEPRECATED_FORMS:
        assert verdict is not None
    else:
        inner = classify(v4, v4nets)
        assert (verdict is None) == (inner is None), (addr, verdict, inner)
        if inner is not None:
            assert str(v4) in verdict


@settings(max_examples=300, deadline=None)
@given(v4=ipv4(), form=st.sampled_from(FORMS), noise=st.integers(0, 2**80 - 1), data=st.data())
def test_internal_embedded_refused_under_every_v6_allowance(v4, form, noise, data):
    # The case: an operator opened "internal IPv6" (::/0 and friends) only.
    assume(not (form == "compatible" and int(v4) <= 1))
    addr = embed(v4, form, noise)
    if classify(v4, ()) is None and form in TRANSLATED_FORMS:
        return  # a public IPv4 address in a translated form is a public destination
    assert classify(addr, covering_v6(addr, data.draw)) is not None


@pytest.mark.parametrize("text", [
    "::ffff:169.254.169.254", "::ffff:a9fe:a9fe", "::ffff:100.100.100.200", "::ffff:169.254.170.2",
    "::ffff:0:a9fe:a9fe", "64:ff9b::a9fe:a9fe", "64:ff9b:1::a9fe:a9fe", "2002:a9fe:a9fe::1",
    "::a9fe:a9fe", "0:0:0:0:0:ffff:a9fe:a9fe",
])
def test_metadata_in_every_form_refused_even_when_all_is_open(text):
    reason = classify(text, ["::/0", "0.0.0.0/0", "169.254.0.0/16", "100.64.0.0/10"])
    assert reason is not None and "metadata" in reason, reason


@pytest.mark.parametrize("text", ["::ffff:10.0.0.5", "::ffff:127.0.0.1", "64:ff9b::a00:5", "2002:a00:5::",
                                  "::ffff:0:a00:5", "64:ff9b:1::c0a8:101", "::ffff:7f00:1"])
def test_private_in_every_form_refused_with_v6_allowance(text):
    assert classify(text, ["::/0"]) is not None


def test_v4_network_opens_the_translated_forms_but_not_deprecated_ones():
    nets = ["10.0.0.0/8"]
    for text in ("::ffff:10.0.0.5", "::ffff:0:a00:5", "64:ff9b::a00:5", "64:ff9b:1::a00:5", "2002:a00:5::1"):
        assert classify(text, nets) is None, text
    for text in ("::10.0.0.5", "2001:0:a00:5::1"):
        assert classify(text, nets) is not None, text


def test_local_nat64_with_other_embedding_refused():
    # 64:ff9b:1:a00:5:: read at /48 or /64 is 10.0.0.5-ish; only the canonical /96 form is judged.
    assert "embedding" in classify("64:ff9b:1:a00:5::1", ())
    assert classify("64:ff9b:1::808:808", ()) is None


def test_unspecified_never_opened():
    assert "unspecified" in classify("0.0.0.0", ["0.0.0.0/0"])
    assert "unspecified" in classify("::", ["::/0"])
    assert "unspecified" in classify("::ffff:0.0.0.0", ["0.0.0.0/0", "::/0"])


def test_native_v6_still_opened_by_v6_networks():
    assert classify("fd12::1", ["fd12::/16"]) is None
    assert classify("fd12::1", ["10.0.0.0/8"]) is not None
    assert "metadata" in classify("fd00:ec2::254", ["::/0"])


def test_embed_helper_is_right():
    assert embed(IPv4Address("1.2.3.4"), "mapped", 0) == ipaddress.ip_address("::ffff:1.2.3.4")
    assert embed(IPv4Address("1.2.3.4"), "nat64", 0) == ipaddress.ip_address("64:ff9b::1.2.3.4")
    assert embed(IPv4Address("1.2.3.4"), "6to4", 0) == ipaddress.ip_address("2002:102:304::")
    assert embed(IPv4Address("1.2.3.4"), "translated", 0) == ipaddress.ip_address("::ffff:0:1.2.3.4")


@pytest.mark.parametrize("ip,wide", [("127.0.0.1", "0.0.0.0/0"), ("127.0.0.1", "64.0.0.0/2"), ("::1", "::/0"),
                                     ("::1", "::/96"), ("::ffff:127.0.0.1", "0.0.0.0/0")])
def test_loopback_not_opened_by_a_wide_network(ip, wide):
    assert "loopback" in classify(ip, [wide])


def test_loopback_opened_by_a_loopback_network():
    assert classify("127.0.0.1", ["127.0.0.1/32"]) is None
    assert classify("127.1.2.3", ["127.0.0.0/8"]) is None
    assert classify("::1", ["::1/128"]) is None
    assert classify("::ffff:127.0.0.1", ["127.0.0.0/8"]) is None


@pytest.mark.parametrize("ip", ["224.0.0.1", "239.1.2.3", "255.255.255.255", "ff02::1", "ff0e::1"])
def test_multicast_and_broadcast_never_opened(ip):
    assert classify(ip, ["0.0.0.0/0", "::/0"]) is not None
