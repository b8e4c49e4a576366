"""The SSRF guard's policy: private networks opened by an allow-list of networks and host
names (TRAWL_ALLOW_NETWORKS), the deprecated TRAWL_ALLOW_PRIVATE_NETWORKS switch, and
link-local and cloud metadata addresses refused whatever either says."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import pytest

from trawl.cli import main
from trawl.embedded import embedded_guard
from trawl.settings import load_settings
from worker.netguard import AllowList, BlockedAddressError, NetGuard

METADATA = "a cloud metadata address"
LINK_LOCAL = "a link-local address"
NEVER = "never allowed, whatever the private-network settings"
ALLOW_HINT = "add the network or host to TRAWL_ALLOW_NETWORKS to allow it"

# Everything a deployment could possibly open, at once.
EVERYTHING = "0.0.0.0/0,::/0,metadata.google.internal,*.internal"

ALWAYS_REFUSED = [
    ("169.254.169.254", METADATA),  # AWS, GCP, Azure
    ("fd00:ec2::254", METADATA),  # AWS over IPv6
    ("fd00:ec2::23", METADATA),  # AWS's DNS over IPv6, same range
    ("fd20:ce::254", METADATA),  # GCP over IPv6
    ("100.100.100.200", METADATA),  # Alibaba Cloud
    ("168.63.129.16", METADATA),  # Azure's host endpoint
    ("192.0.0.192", METADATA),  # Oracle Cloud
    ("169.254.170.2", LINK_LOCAL),  # ECS task metadata
    ("169.254.0.1", LINK_LOCAL),
    ("fe80::1", LINK_LOCAL),
    ("::ffff:169.254.169.254", f"{METADATA} (IPv4-mapped 169.254.169.254)"),
    ("2002:a9fe:a9fe::", f"{METADATA} (6to4 169.254.169.254)"),
    ("64:ff9b::a9fe:a9fe", f"{METADATA} (NAT64 169.254.169.254)"),
]


class StubDns:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def __call__(self, host: str) -> Sequence[str]:
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


@pytest.mark.parametrize(("address", "reason"), ALWAYS_REFUSED)
@pytest.mark.parametrize(
    "guard",
    [
        NetGuard(),
        NetGuard(allow_private=True),
        NetGuard(allow=EVERYTHING),
        NetGuard(allow_private=True, allow=EVERYTHING, exempt=["0.0.0.0/0"]),
        NetGuard.allow_all(),
        embedded_guard({}),
    ],
    ids=["default", "allow-private", "allow-everything", "all-at-once", "allow_all", "trawl-run"],
)
def test_metadata_and_link_local_are_refused_whatever_the_settings(
    guard: NetGuard, address: str, reason: str
) -> None:
    assert guard.reason(address, "metadata.google.internal") == reason
    with pytest.raises(BlockedAddressError) as info:
        guard.check_address(address, address)
    assert str(info.value) == f"{address} is {reason}; {NEVER}"


async def test_a_name_resolving_to_metadata_is_refused_with_private_networks_allowed() -> None:
    dns = StubDns({"metadata.google.internal": ["169.254.169.254"], "md6.test": ["fd00:ec2::254"]})
    guard = NetGuard(allow_private=True, allow=EVERYTHING, resolver=dns)
    with pytest.raises(BlockedAddressError) as info:
        await guard.check_url("http://metadata.google.internal/computeMetadata/v1/")
    assert str(info.value) == (
        "refused http://metadata.google.internal/computeMetadata/v1/: "
        f"metadata.google.internal resolves to 169.254.169.254, {METADATA}; {NEVER}"
    )
    with pytest.raises(BlockedAddressError, match=r"fd00:ec2::254, a cloud metadata address"):
        await guard.check_url("http://md6.test/latest/meta-data/")


def test_allowed_networks_open_only_themselves() -> None:
    guard = NetGuard(allow="10.1.0.0/16, 127.0.0.1, fd12:3456::/32")
    assert guard.reason("10.1.2.3") is None
    assert guard.reason("::ffff:10.1.2.3") is None  # the IPv4-mapped form of an allowed address
    assert guard.reason("127.0.0.1") is None
    assert guard.reason("fd12:3456::9") is None
    assert guard.reason("10.2.0.1") == "a private address"
    assert guard.reason("127.0.0.2") == "a loopback address"
    assert guard.reason("192.168.1.1") == "a private address"
    with pytest.raises(BlockedAddressError) as info:
        guard.check_address("db.test", "10.2.0.1")
    assert str(info.value) == f"db.test resolves to 10.2.0.1, a private address; {ALLOW_HINT}"


async def test_allowed_host_names_open_their_addresses_and_nothing_else() -> None:
    dns = StubDns(
        {
            "intranet.example": ["10.9.9.9"],
            "wiki.corp.example": ["192.168.5.5"],
            "corp.example": ["192.168.5.6"],
            "other.example": ["10.9.9.9"],
            "md.corp.example": ["169.254.169.254"],
        }
    )
    guard = NetGuard(allow="intranet.example, *.corp.example", resolver=dns)
    await guard.check_url("http://intranet.example/")
    await guard.check_url("http://INTRANET.example/page")
    assert guard.reason("10.9.9.9", "intranet.example.") is None
    await guard.check_url("http://wiki.corp.example/")
    for url in ("http://corp.example/", "http://other.example/"):  # not the host itself
        with pytest.raises(BlockedAddressError, match="a private address"):
            await guard.check_url(url)
    with pytest.raises(BlockedAddressError, match=NEVER):
        await guard.check_url("http://md.corp.example/")


def test_the_deprecated_switch_allows_rfc1918_and_loopback_only() -> None:
    settings = load_settings(env={"TRAWL_ALLOW_PRIVATE_NETWORKS": "1"})
    guard = NetGuard(allow_private=settings.allow_private_networks, allow=settings.allow_networks)
    for address in ("10.0.0.5", "172.16.0.1", "192.168.1.1", "127.0.0.1", "::1", "fd12::1"):
        assert guard.reason(address) is None, address
    assert guard.reason("100.64.0.1") == "a carrier-grade NAT address"
    assert guard.reason("0.0.0.0") == "an unspecified address"
    assert guard.reason("169.254.169.254") == METADATA


def test_allow_networks_setting_is_read_and_checked() -> None:
    settings = load_settings(env={"TRAWL_ALLOW_NETWORKS": "10.0.0.0/8,intranet.example"})
    guard = NetGuard(allow=settings.allow_networks)
    assert guard.reason("10.4.4.4") is None
    assert guard.reason("10.4.4.4", "intranet.example") is None
    assert guard.reason("192.168.0.1", "intranet.example") is None
    assert guard.reason("192.168.0.1", "elsewhere.example") == "a private address"
    assert load_settings(env={}).allow_networks == ""


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "not a host", "10.0.0", "http://x.example/", "*"])
def test_a_bad_allow_list_entry_is_one_clear_error(entry: str) -> None:
    with pytest.raises(ValueError) as info:
        load_settings(env={"TRAWL_ALLOW_NETWORKS": f"127.0.0.1/32,{entry}"})
    assert str(info.value) == (
        f"TRAWL_ALLOW_NETWORKS: {entry!r} is neither a network (10.0.0.0/8, 127.0.0.1) "
        "nor a host name (intranet.example, *.corp.example)"
    )


def test_a_bad_allow_list_stops_trawl_run_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow = tmp_path / "w.yaml"
    workflow.write_text(
        "name: bad-allow\nstart_urls: [http://127.0.0.1:9/]\nengine: http\n"
        "phases: [{name: p, nodes: [{type: extract_links}]}]\n"
    )
    monkeypatch.setenv("TRAWL_ALLOW_NETWORKS", "10.0.0.0/8,bad host")
    code = main(["run", str(workflow), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith(
            "TRAWL_ALLOW_NETWORKS: 'bad host' is neither a network (10.0.0.0/8, 127.0.0.1) "
            "nor a host name (intranet.example, *.corp.example)"
        )
    )
    assert "Traceback" not in err


def test_allow_list_parsing() -> None:
    allowed = AllowList.parse(" 10.0.0.0/8 ,, [fd00::1], Intranet.Example., *.corp.example ")
    assert sorted(str(n) for n in allowed.networks) == ["10.0.0.0/8", "fd00::1/128"]
    assert allowed.hosts == frozenset({"intranet.example"})
    assert allowed.suffixes == ("corp.example",)
    assert not AllowList.parse("")
