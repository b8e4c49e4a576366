"""The SSRF guard: which addresses a crawl may connect to.

A crawl follows URLs that strangers wrote, so a page (or a redirect, or a DNS answer) can
point it at the machine it runs on, the private network around it or the cloud metadata
service. The fetchers refuse loopback, private, metadata and other non-public addresses,
judged after DNS resolution: a host name is refused when ANY of its addresses is, and the
fetchers connect only to addresses that were checked (see ``worker.fetchers.http`` and
``worker.fetchers.browser``).

Private networks are opened by an allow-list (``TRAWL_ALLOW_NETWORKS``): networks
(``10.0.0.0/8``, ``127.0.0.1``) and host names (``intranet.example``, ``*.corp.example``).
``allow_private`` (the deprecated ``TRAWL_ALLOW_PRIVATE_NETWORKS=1``, and ``trawl run`` on
a user's own machine) allows the RFC 1918 networks, IPv6 unique local addresses and
loopback. Link-local addresses and the cloud metadata services are refused whatever the
allow-list says: nothing a crawl needs lives there, and credentials do.

``blocked_reason`` is the pure classification; ``NetGuard`` applies it with the
deployment's policy and resolves host names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence

from yarl import URL

from backends.errors import PermanentError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Resolves a host name to its addresses (as strings); raises OSError when it cannot.
Resolver = Callable[[str], Awaitable[Sequence[str]]]

ALLOW_SETTING = "TRAWL_ALLOW_NETWORKS"
ALLOW_HINT = f"add the network or host to {ALLOW_SETTING} to allow it"
NEVER_HINT = "never allowed, whatever the private-network settings"

LOOPBACK = "a loopback address"
PRIVATE = "a private address"
LINK_LOCAL = "a link-local address"
METADATA = "a cloud metadata address"
UNSPECIFIED = "an unspecified address"
MULTICAST = "a multicast address"
RESERVED = "a reserved address"
CGNAT = "a carrier-grade NAT address"


def _table(rows: Iterable[tuple[str, str]]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(net), reason) for net, reason in rows)


# First match wins: the metadata addresses sit inside link-local and ULA ranges.
_IPV4 = _table(
    [
        ("169.254.169.254/32", METADATA),  # AWS, GCP (metadata.google.internal), Azure, ...
        ("100.100.100.200/32", METADATA),  # Alibaba Cloud
        ("192.0.0.192/32", METADATA),  # Oracle Cloud (legacy)
        ("168.63.129.16/32", METADATA),  # Azure's host endpoint (WireServer)
        ("0.0.0.0/32", UNSPECIFIED),
        ("0.0.0.0/8", RESERVED),  # "this network": Linux connects 0.x to the local host
        ("127.0.0.0/8", LOOPBACK),
        ("10.0.0.0/8", PRIVATE),
        ("172.16.0.0/12", PRIVATE),
        ("192.168.0.0/16", PRIVATE),
        ("100.64.0.0/10", CGNAT),  # RFC 6598; Alibaba's metadata service is 100.100.100.200
        ("169.254.0.0/16", LINK_LOCAL),
        ("224.0.0.0/4", MULTICAST),
        ("192.0.0.0/24", RESERVED),  # IETF protocol assignments (Oracle's old metadata)
        ("192.0.2.0/24", RESERVED),  # documentation
        ("198.18.0.0/15", RESERVED),  # benchmarking
        ("198.51.100.0/24", RESERVED),  # documentation
        ("203.0.113.0/24", RESERVED),  # documentation
        ("240.0.0.0/4", RESERVED),  # future use, and 255.255.255.255 broadcast
    ]
)
_IPV6 = _table(
    [
        ("fd00:ec2::/32", METADATA),  # AWS over IPv6: metadata (::254), DNS, NTP
        ("fd20:ce::254/128", METADATA),  # GCP over IPv6
        ("::/128", UNSPECIFIED),
        ("::1/128", LOOPBACK),
        ("fc00::/7", PRIVATE),  # unique local addresses
        ("fec0::/10", PRIVATE),  # site-local (deprecated)
        ("fe80::/10", LINK_LOCAL),
        ("ff00::/8", MULTICAST),
        ("2001::/23", RESERVED),  # IETF protocol assignments, Teredo among them
        ("2001:db8::/32", RESERVED),  # documentation
        ("3fff::/20", RESERVED),  # documentation
    ]
)
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_IPV6_OUTSIDE_GLOBAL = (*_IPV6, (ipaddress.ip_network("::/0"), RESERVED))
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address carries (IPv4-mapped, NAT64, 6to4), and the form."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    return None


def blocked_reason(address: IPAddress) -> str | None:
    """Why a crawler must not connect to ``address`` (``"a private address"``, ...), or None
    for a public address. IPv6 forms that carry an IPv4 address are judged by that address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner, form = embedded
            reason = blocked_reason(inner)
            return None if reason is None else f"{reason} ({form} {inner})"
        # Every address outside 2000::/3 that the table does not name is reserved
        # (IPv4-compatible ::a.b.c.d, discard-only 100::/64, local-use NAT64...).
        table = _IPV6 if address in _GLOBAL_UNICAST else _IPV6_OUTSIDE_GLOBAL
    else:
        table = _IPV4
    for network, reason in table:
        if address in network:
            return reason
    return None


def always_refused(reason: str) -> bool:
    """Whether a ``blocked_reason`` is one no allow-list opens: link-local and metadata
    addresses (an IPv6 form carrying one included)."""
    return reason.startswith((METADATA, LINK_LOCAL))


class BlockedAddressError(PermanentError):
    """A URL whose host is, or resolves to, an address the crawl may not connect to."""

    error_class = "blocked_address"

    def __init__(
        self,
        host: str,
        address: str,
        reason: str,
        url: str | None = None,
        redirected_from: str | None = None,
    ) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        self.url = url
        self.redirected_from = redirected_from
        hint = NEVER_HINT if always_refused(reason) else ALLOW_HINT
        if host == address:
            message = f"{host} is {reason}; {hint}"
        else:
            message = f"{host} resolves to {address}, {reason}; {hint}"
        if url is not None:
            via = f" (redirected from {redirected_from})" if redirected_from else ""
            message = f"refused {url}{via}: {message}"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[BlockedAddressError], tuple[str | None, ...]]:
        return type(self), (self.host, self.address, self.reason, self.url, self.redirected_from)

    def for_url(self, url: str, redirected_from: str | None = None) -> BlockedAddressError:
        """The same refusal, naming the URL that was being fetched."""
        return BlockedAddressError(
            self.host, self.address, self.reason, url=url, redirected_from=redirected_from
        )


def parse_address(text: str) -> IPAddress | None:
    """``text`` as an IP address (IPv6 with or without brackets), or None."""
    try:
        return ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


# What ``allow_private`` (TRAWL_ALLOW_PRIVATE_NETWORKS=1, ``trawl run``) opens: RFC 1918,
# IPv6 unique local addresses and loopback. Metadata inside them stays refused.
PRIVATE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "fc00::/7", "::1")
)


class AllowList:
    """The networks and host names a deployment opens (``TRAWL_ALLOW_NETWORKS``)."""

    __slots__ = ("hosts", "networks", "suffixes")

    def __init__(
        self,
        networks: Iterable[IPNetwork] = (),
        hosts: Iterable[str] = (),
        suffixes: Iterable[str] = (),
    ) -> None:
        self.networks: frozenset[IPNetwork] = frozenset(networks)
        self.hosts: frozenset[str] = frozenset(hosts)
        self.suffixes: tuple[str, ...] = tuple(sorted(set(suffixes)))

    @classmethod
    def parse(cls, entries: str | Iterable[str | IPNetwork]) -> AllowList:
        """Networks (``10.0.0.0/8``, ``127.0.0.1``, ``fd12::/16``), host names
        (``intranet.example``) and domains (``*.corp.example``: its subdomains), from a
        comma-separated string or a list. ValueError naming the first entry that is none."""
        items = entries.split(",") if isinstance(entries, str) else entries
        networks: list[IPNetwork] = []
        hosts: list[str] = []
        suffixes: list[str] = []
        for item in items:
            if not isinstance(item, str):
                networks.append(item)
                continue
            entry = item.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = entry.lower().rstrip(".")
            wildcard = name.startswith("*.")
            name = name.removeprefix("*.")
            if len(name) > 253 or not _HOST_NAME.fullmatch(name) or name.split(".")[-1].isdigit():
                raise ValueError(
                    f"{ALLOW_SETTING}: {entry!r} is neither a network (10.0.0.0/8, "
                    "127.0.0.1) nor a host name (intranet.example, *.corp.example)"
                )
            (suffixes if wildcard else hosts).append(name)
        return cls(networks, hosts, suffixes)

    def __bool__(self) -> bool:
        return bool(self.networks or self.hosts or self.suffixes)

    def __repr__(self) -> str:
        names = [*sorted(self.hosts), *(f"*.{s}" for s in self.suffixes)]
        return f"AllowList({sorted(str(n) for n in self.networks) + names})"

    def allows_host(self, host: str | None) -> bool:
        if not host or not (self.hosts or self.suffixes):
            return False
        name = host.lower().rstrip(".")
        return name in self.hosts or any(name.endswith(f".{s}") for s in self.suffixes)

    def allows_address(self, addresses: Iterable[IPAddress]) -> bool:
        return any(a in net for a in addresses for net in self.networks if a.version == net.version)


_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


class NetGuard:
    """The address policy of one process.

    Every guard refuses link-local and cloud metadata addresses. ``allow`` opens networks
    and host names (an ``AllowList``, or what ``AllowList.parse`` reads); ``exempt`` is
    the same for networks only (tests serve a "public" site on 127.0.0.1 while 127.0.0.2
    stays refused). ``allow_private`` opens ``PRIVATE_NETWORKS``. ``resolver`` replaces
    the system's DNS lookup.
    """

    def __init__(
        self,
        *,
        allow_private: bool = False,
        allow: AllowList | str | Iterable[str | IPNetwork] = (),
        exempt: Iterable[IPNetwork | str] = (),
        resolver: Resolver | None = None,
    ) -> None:
        self.allow_private = allow_private
        parsed = allow if isinstance(allow, AllowList) else AllowList.parse(allow)
        extra = [ipaddress.ip_network(n) if isinstance(n, str) else n for n in exempt]
        if allow_private:
            extra.extend(PRIVATE_NETWORKS)
        self.allowed = AllowList([*parsed.networks, *extra], parsed.hosts, parsed.suffixes)
        self.exempt: frozenset[IPNetwork] = self.allowed.networks
        self._resolver = resolver or _system_resolve

    @classmethod
    def allow_all(cls) -> NetGuard:
        """The guard of a user's own machine (``trawl run``): private networks and loopback
        allowed, link-local and metadata addresses still refused."""
        return cls(allow_private=True)

    @property
    def enforcing(self) -> bool:
        """Whether this guard can refuse anything: always, since no setting opens link-local
        and metadata addresses."""
        return True

    def __repr__(self) -> str:
        return f"NetGuard(allow_private={self.allow_private}, allowed={self.allowed!r})"

    def reason(self, address: IPAddress | str, host: str | None = None) -> str | None:
        """Why this guard refuses ``address`` (of ``host``, when given: an allowed host
        name opens its addresses), or None when it allows it."""
        ip = parse_address(address) if isinstance(address, str) else address
        if ip is None:
            return "not a valid IP address"
        reason = blocked_reason(ip)
        if reason is None or always_refused(reason):
            return reason
        if self.allowed.allows_host(host):
            return None
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(ip)
            if embedded is not None:
                candidates.append(embedded[0])
        if self.allowed.allows_address(candidates):
            return None
        return reason

    def check_address(self, host: str, address: IPAddress | str) -> None:
        """Raise BlockedAddressError when ``host``'s address ``address`` is refused."""
        reason = self.reason(address, host)
        if reason is not None:
            raise BlockedAddressError(host, str(address), reason)

    async def resolve(self, host: str) -> list[str]:
        """The addresses of ``host`` (an IP literal is its own); OSError when it has none."""
        literal = parse_address(host)
        if literal is not None:
            return [str(literal)]
        addresses = list(dict.fromkeys(await self._resolver(host)))
        if not addresses:
            raise OSError(f"{host} has no addresses")
        return addresses

    async def checked_addresses(self, host: str) -> list[str]:
        """``resolve(host)``, refused with BlockedAddressError if ANY address is refused:
        what a connection to ``host`` may use."""
        addresses = await self.resolve(host)
        for address in addresses:
            self.check_address(host, address)
        return addresses

    async def check_url(self, url: str) -> None:
        """Refuse ``url`` (BlockedAddressError) if its host is or resolves to a refused
        address; PermanentError ``dns`` when the host does not resolve."""
        try:
            host = URL(url).raw_host
        except ValueError as exc:
            raise PermanentError(f"invalid URL {url}: {exc}", error_class="invalid_url") from exc
        if not host:
            raise PermanentError(f"invalid URL {url}: no host", error_class="invalid_url")
        try:
            await self.checked_addresses(host)
        except BlockedAddressError as exc:
            raise exc.for_url(url) from None
        except OSError as exc:
            raise PermanentError(
                f"refused {url}: cannot resolve {host} ({exc})", error_class="dns"
            ) from exc


async def _system_resolve(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, None, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG
    )
    return [str(info[4][0]) for info in infos]
