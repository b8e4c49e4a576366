"""Binding the HTTP port first, so a port already taken is one clear line, not a traceback
after connecting to every backend."""

from __future__ import annotations

import errno
import socket

from trawl.cli_common import CommandError

EXIT_PORT_IN_USE = 1


def bind_port(host: str, port: int, *, host_setting: str) -> socket.socket:
    """A listening socket on ``host:port``; CommandError naming the port and the settings
    to change when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise CommandError(
            f"cannot listen on {host}: not an address ({exc}); set {host_setting}",
            EXIT_PORT_IN_USE,
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            why = "is already in use"
        elif exc.errno == errno.EACCES:
            why = "needs privileges this process does not have"
        else:
            why = f"cannot be used ({exc.strerror or exc})"
        raise CommandError(
            f"port {port} on {host} {why}; set PORT to a free port "
            f"(or {host_setting} to another address)",
            EXIT_PORT_IN_USE,
        ) from None
    sock.setblocking(False)
    return sock
