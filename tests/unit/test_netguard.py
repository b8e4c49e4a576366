"""The SSRF guard's rules: which addresses are refused and why, what a refusal says, host
names judged by every address they resolve to, and who allows private networks."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence

import pytest

from backends.errors import PermanentError
from trawl.embedded import embedded_guard
from trawl.settings import load_settings
from worker.netguard import BlockedAddressError, NetGuard, blocked_reason

LOOPBACK = "a loopback address"
PRIVATE = "a private address"
LINK_LOCAL = "a link-local address"
METADATA = "a cloud metadata address"
UNSPECIFIED = "an unspecified address"
MULTICAST = "a multicast address"
RESERVED = "a reserved address"
CGNAT = "a carrier-grade NAT address"
HINT = "add the network or host to TRAWL_ALLOW_NETWORKS to allow it"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        # IPv4
        ("127.0.0.1", LOOPBACK),
        ("127.255.255.254", LOOPBACK),
        ("10.0.0.5", PRIVATE),
        ("172.16.0.1", PRIVATE),
        ("172.31.255.255", PRIVATE),
        ("192.168.1.1", PRIVATE),
        ("169.254.169.254", METADATA),
        ("169.254.0.1", LINK_LOCAL),
        ("169.254.170.2", LINK_LOCAL),
        ("0.0.0.0", UNSPECIFIED),
        ("0.1.2.3", RESERVED),
        ("100.64.0.1", CGNAT),
        ("100.100.100.200", METADATA),  # Alibaba Cloud
        ("224.0.0.1", MULTICAST),
        ("239.255.255.250", MULTICAST),
        ("240.0.0.1", RESERVED),
        ("255.255.255.255", RESERVED),
        ("192.0.0.192", METADATA),  # Oracle Cloud
        ("192.0.2.1", RESERVED),
        ("198.18.0.1", RESERVED),
        ("172.32.0.1", None),
        ("100.128.0.1", None),
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        # IPv6
        ("::1", LOOPBACK),
        ("::", UNSPECIFIED),
        ("fc00::1", PRIVATE),
        ("fd12:3456::1", PRIVATE),
        ("fec0::1", PRIVATE),
        ("fd00:ec2::254", METADATA),
        ("fe80::1", LINK_LOCAL),
        ("fe80::1%eth0", LINK_LOCAL),
        ("ff02::1", MULTICAST),
        ("::127.0.0.1", RESERVED),  # IPv4-compatible (deprecated)
        ("100::1", RESERVED),  # discard-only
        ("2001:db8::1", RESERVED),  # documentation
        ("2001::1", RESERVED),  # Teredo
        ("2606:4700:4700::1111", None),
        ("2001:4860:4860::8888", None),
        # IPv6 forms that carry an IPv4 address are judged by it
        ("::ffff:127.0.0.1", f"{LOOPBACK} (IPv4-mapped 127.0.0.1)"),
        ("::ffff:169.254.169.254", f"{METADATA} (IPv4-mapped 169.254.169.254)"),
        ("::ffff:10.0.0.5", f"{PRIVATE} (IPv4-mapped 10.0.0.5)"),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::a00:1", f"{PRIVATE} (NAT64 10.0.0.1)"),
        ("64:ff9b::808:808", None),
        ("2002:7f00:1::1", f"{LOOPBACK} (6to4 127.0.0.1)"),
        ("2002:a9fe:a9fe::", f"{METADATA} (6to4 169.254.169.254)"),
        ("2002:808:808::1", None),
    ],
)
def test_classification(address: str, reason: str | None) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) == reason


def test_allow_private_allows_private_networks_but_never_metadata() -> None:
    guard = NetGuard.allow_all()
    for address in ("127.0.0.1", "10.0.0.5", "::1", "fd12:3456::1"):
        assert guard.reason(address) is None
        guard.check_address("h.test", address)
    assert guard.reason("169.254.169.254") == METADATA
    assert guard.reason("fd00:ec2::254") == METADATA


def test_exempt_networks_count_as_public() -> None:
    guard = NetGuard(exempt=[ipaddress.ip_network("127.0.0.1/32")])
    assert guard.reason("127.0.0.1") is None
    assert guard.reason("::ffff:127.0.0.1") is None
    assert guard.reason("127.0.0.2") == LOOPBACK
    assert guard.reason("10.0.0.1") == PRIVATE
    assert guard.reason("not-an-address") == "not a valid IP address"


def test_refusal_names_host_address_and_reason() -> None:
    guard = NetGuard()
    with pytest.raises(BlockedAddressError) as info:
        guard.check_address("x.test", "10.0.0.5")
    error = info.value
    assert isinstance(error, PermanentError)  # recorded as failed, never retried
    assert error.error_class == "blocked_address"
    assert (error.host, error.address, error.reason) == ("x.test", "10.0.0.5", PRIVATE)
    assert str(error) == f"x.test resolves to 10.0.0.5, a private address; {HINT}"
    redirected = error.for_url("http://x.test/a", "http://start.test/")
    assert str(redirected) == (
        "refused http://x.test/a (redirected from http://start.test/): "
        f"x.test resolves to 10.0.0.5, a private address; {HINT}"
    )
    assert redirected.error_class == "blocked_address"


class StubDns:
    """A resolver with fixed answers; counts its lookups."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def __call__(self, host: str) -> Sequence[str]:
        self.lookups.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


async def test_a_host_resolving_to_a_private_address_is_refused() -> None:
    guard = NetGuard(resolver=StubDns({"x.test": ["10.0.0.5"]}))
    with pytest.raises(BlockedAddressError) as info:
        await guard.check_url("http://x.test/")
    assert str(info.value) == (
        f"refused http://x.test/: x.test resolves to 10.0.0.5, a private address; {HINT}"
    )
    assert info.value.url == "http://x.test/"


async def test_one_blocked_address_among_public_ones_refuses_the_host() -> None:
    dns = StubDns({"mixed.test": ["93.184.216.34", "2606:4700::1", "127.0.0.1"]})
    guard = NetGuard(resolver=dns)
    with pytest.raises(BlockedAddressError, match=r"mixed.test resolves to 127.0.0.1, a loop"):
        await guard.check_url("https://mixed.test/page")
    with pytest.raises(BlockedAddressError):
        await guard.checked_addresses("mixed.test")


async def test_public_hosts_pass_and_their_addresses_are_returned() -> None:
    dns = StubDns({"shop.test": ["93.184.216.34", "93.184.216.34", "2606:4700::1"]})
    guard = NetGuard(resolver=dns)
    await guard.check_url("http://shop.test:8080/p?q=1")
    assert await guard.checked_addresses("shop.test") == ["93.184.216.34", "2606:4700::1"]


async def test_gcp_metadata_name_is_refused_after_resolution() -> None:
    guard = NetGuard(resolver=StubDns({"metadata.google.internal": ["169.254.169.254"]}))
    with pytest.raises(
        BlockedAddressError, match=re.escape("169.254.169.254, a cloud metadata address")
    ):
        await guard.check_url("http://metadata.google.internal/computeMetadata/v1/")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:8080/", "127.0.0.1 is a loopback address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "is a cloud metadata address"),
        ("http://[::ffff:a9fe:a9fe]/", "a cloud metadata address (IPv4-mapped 169.254.169.254)"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address"),
    ],
)
async def test_ip_literals_are_judged_without_dns(url: str, message: str) -> None:
    dns = StubDns({})
    guard = NetGuard(resolver=dns)
    with pytest.raises(BlockedAddressError, match=re.escape(message)):
        await guard.check_url(url)
    assert dns.lookups == []


async def test_unresolvable_host_is_a_permanent_dns_error() -> None:
    guard = NetGuard(resolver=StubDns({}))
    with pytest.raises(PermanentError) as info:
        await guard.check_url("http://nowhere.test/")
    assert info.value.error_class == "dns"
    assert "nowhere.test" in str(info.value)


async def test_allow_private_still_resolves_to_refuse_metadata() -> None:
    dns = StubDns({"intra.test": ["10.0.0.5"], "md.test": ["169.254.169.254"]})
    guard = NetGuard(allow_private=True, resolver=dns)
    await guard.check_url("http://intra.test/")
    with pytest.raises(BlockedAddressError, match="a cloud metadata address; never allowed"):
        await guard.check_url("http://md.test/")
    assert dns.lookups == ["intra.test", "md.test"]


async def test_system_resolver_localhost_is_loopback() -> None:
    with pytest.raises(BlockedAddressError, match=r"localhost resolves to .*a loopback address"):
        await NetGuard().check_url("http://localhost/")


def test_workers_refuse_private_networks_unless_configured() -> None:
    default = NetGuard(allow_private=load_settings(env={}).allow_private_networks)
    assert default.reason("10.0.0.5") == PRIVATE
    allowed = load_settings(env={"TRAWL_ALLOW_PRIVATE_NETWORKS": "1"})
    assert NetGuard(allow_private=allowed.allow_private_networks).reason("10.0.0.5") is None


@pytest.mark.parametrize(
    ("environ", "refuses_private"),
    [
        ({}, False),  # trawl run on a user's own machine
        ({"TRAWL_ALLOW_PRIVATE_NETWORKS": ""}, False),
        ({"TRAWL_ALLOW_PRIVATE_NETWORKS": "1"}, False),
        ({"TRAWL_ALLOW_PRIVATE_NETWORKS": "true"}, False),
        ({"TRAWL_ALLOW_PRIVATE_NETWORKS": "0"}, True),
        ({"TRAWL_ALLOW_PRIVATE_NETWORKS": "false"}, True),
        ({"TRAWL_ALLOW_PRIVATE_NETWORKS": "False"}, True),
    ],
)
def test_trawl_run_allows_private_networks_unless_told_not_to(
    environ: dict[str, str], refuses_private: bool
) -> None:
    guard = embedded_guard(environ)
    assert (guard.reason("127.0.0.1") is not None) is refuses_private
    assert guard.reason("169.254.169.254") == METADATA
