"""The SSRF guard: which addresses a crawl may connect to.

A crawl follows URLs that strangers wrote, so a page (or a redirect, or a DNS answer) can
point it at the machine it runs on, the private network around it or the cloud metadata
service. Unless private networks are allowed (``TRAWL_ALLOW_PRIVATE_NETWORKS=1``, and
``trawl run`` on a user's own machine), the fetchers refuse loopback, private, link-local,
metadata and other non-public addresses, judged after DNS resolution: a host name is
refused when ANY of its addresses is, and the fetchers connect only to addresses that
were checked (see ``worker.fetchers.http`` and ``worker.fetchers.browser``).

``blocked_reason`` is the pure classification; ``NetGuard`` applies it with the
deployment's policy and resolves host names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence

from yarl import URL

from backends.errors import PermanentError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Resolves a host name to its addresses (as strings); raises OSError when it cannot.
Resolver = Callable[[str], Awaitable[Sequence[str]]]

ALLOW_HINT = "set TRAWL_ALLOW_PRIVATE_NETWORKS=1 to allow private networks"

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
        ("fd00:ec2::254/128", METADATA),  # AWS over IPv6
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
        if host == address:
            message = f"{host} is {reason}; {ALLOW_HINT}"
        else:
            message = f"{host} resolves to {address}, {reason}; {ALLOW_HINT}"
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


class NetGuard:
    """The address policy of one process.

    ``allow_private`` lets everything through (and resolves nothing). ``exempt`` networks
    count as public whatever they are: tests use it to serve a "public" site on 127.0.0.1
    while 127.0.0.2 stays refused. ``resolver`` replaces the system's DNS lookup.
    """

    def __init__(
        self,
        *,
        allow_private: bool = False,
        exempt: Iterable[IPNetwork | str] = (),
        resolver: Resolver | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.exempt: frozenset[IPNetwork] = frozenset(
            ipaddress.ip_network(net) if isinstance(net, str) else net for net in exempt
        )
        self._resolver = resolver or _system_resolve

    @classmethod
    def allow_all(cls) -> NetGuard:
        """A guard that refuses nothing (``TRAWL_ALLOW_PRIVATE_NETWORKS=1``)."""
        return cls(allow_private=True)

    @property
    def enforcing(self) -> bool:
        """Whether this guard can refuse anything at all."""
        return not self.allow_private

    def __repr__(self) -> str:
        exempt = sorted(str(net) for net in self.exempt)
        return f"NetGuard(allow_private={self.allow_private}, exempt={exempt})"

    def reason(self, address: IPAddress | str) -> str | None:
        """Why this guard refuses ``address``, or None when it allows it."""
        if self.allow_private:
            return None
        ip = parse_address(address) if isinstance(address, str) else address
        if ip is None:
            return "not a valid IP address"
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(ip)
            if embedded is not None:
                candidates.append(embedded[0])
        if any(candidate in net for candidate in candidates for net in self.exempt):
            return None
        return blocked_reason(ip)

    def check_address(self, host: str, address: IPAddress | str) -> None:
        """Raise BlockedAddressError when ``host``'s address ``address`` is refused."""
        reason = self.reason(address)
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
        if self.enforcing:
            for address in addresses:
                self.check_address(host, address)
        return addresses

    async def check_url(self, url: str) -> None:
        """Refuse ``url`` (BlockedAddressError) if its host is or resolves to a refused
        address; PermanentError ``dns`` when the host does not resolve."""
        if not self.enforcing:
            return
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
