"""Proxy URLs, parsed one way for validation, for a provider's list and for the worker.

A proxy is ``http://[user[:password]@]host[:port]``: plain HTTP proxies only, because that
is the one kind both engines speak (aiohttp natively, Chromium per browser context);
HTTPS targets go through them with CONNECT. A proxy is named ``host:port`` everywhere a
person or a machine reads about it (logs, errors, telemetry): its credentials are never
shown, so ``ProxyAddress`` keeps them out of its ``repr`` and every message here names a
URL without its userinfo.

In a workflow the password must name a secret (``${secret:NAME}``, workflows/secrets.py):
a workflow is stored, versioned and shown to whoever may read it, so a password written in
it would be a password leaked. ``workflow_url_error`` says so; lines of a provider's list
are the provider's own and may carry credentials as they are.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from workflows.redact import redact_url
from workflows.secrets import SECRET_REF

SHAPE = "http://[user:password@]host:port"
DEFAULT_PORT = 80
_HOST = re.compile(r"[A-Za-z0-9_.-]{1,253}")
# Stands for a ${secret:NAME} while a workflow's URL is checked (the values are not known).
_PLACEHOLDER = "trawlsecret{}ref"
_PLACEHOLDERS = re.compile(r"(?:trawlsecret[0-9]+ref)+")


class ProxyUrlError(ValueError):
    """A proxy URL that is not ``http://[user:password@]host:port``; the message never
    holds the URL's credentials."""


@dataclass(frozen=True, slots=True)
class ProxyAddress:
    """Where a proxy is and how to log in to it (credentials percent-decoded)."""

    host: str  # lower-case; an IPv6 address without brackets
    port: int
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    @property
    def name(self) -> str:
        """``host:port`` (``[v6]:port``): how the proxy is shown everywhere."""
        return f"{self.bracketed_host}:{self.port}"

    @property
    def bracketed_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def __str__(self) -> str:
        return self.name


def parse_proxy_url(text: str) -> ProxyAddress:
    """``text`` as a proxy; ProxyUrlError saying what is wrong (without the credentials)."""
    shown = shown_url(text.strip())
    if text != text.strip() or any(c.isspace() for c in text):
        raise ProxyUrlError(f"must not contain whitespace, got {shown!r}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        detail = "" if "@" in text else f" ({exc})"  # the parser's words may quote a password
        raise ProxyUrlError(f"must be {SHAPE}, got {shown!r}{detail}") from None
    if parts.scheme.lower() != "http":
        raise ProxyUrlError(
            f"must be {SHAPE} (plain HTTP proxies only: the one kind both engines speak), "
            f"got {shown!r}"
        )
    if port == 0:
        raise ProxyUrlError(f"must be {SHAPE} with a port from 1 to 65535, got {shown!r}")
    host = (parts.hostname or "").lower()
    if not host or not (_HOST.fullmatch(host) or _is_ipv6(host)):
        raise ProxyUrlError(f"must be {SHAPE} with a host, got {shown!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxyUrlError(f"must be {SHAPE}, without a path or query, got {shown!r}")
    return ProxyAddress(
        host=host,
        port=port or DEFAULT_PORT,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )


def parse_listed_proxy(line: str) -> ProxyAddress:
    """A line of a provider's list: a proxy URL, or ``host:port`` (an http proxy)."""
    return parse_proxy_url(line if "://" in line else f"http://{line}")


def workflow_url_error(template: str) -> str | None:
    """Why ``template`` (a workflow's ``proxies.urls`` entry, secret references not yet
    resolved) is no proxy URL, or holds a password in plain text; None when it is fine."""
    count = 0

    def placeholder(_match: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return _PLACEHOLDER.format(count)

    shaped = SECRET_REF.sub(placeholder, template)
    try:
        address = parse_proxy_url(shaped)
    except ProxyUrlError as exc:
        return str(exc).replace(shown_url(shaped), shown_url(template))
    if address.password and not _PLACEHOLDERS.fullmatch(address.password):
        return (
            "the password is written in plain text; name a secret instead, e.g. "
            f"http://user:${{secret:PROXY_PASSWORD}}@{address.name}"
        )
    return None


def shown_url(text: str) -> str:
    """``text`` as a message may quote it: everything up to the last ``@`` of a URL with
    userinfo is masked (a password may hold ``/`` or ``:``, which fool a URL parser)."""
    scheme, sep, rest = text.partition("://")
    if "@" not in rest:
        return redact_url(text)
    return f"{scheme}{sep}REDACTED@{rest.rpartition('@')[2]}"


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False
