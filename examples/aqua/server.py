"""Serve the generated Aqua shop over HTTP, on loopback only.

The shop is test and demo material: it binds 127.0.0.1 (or another loopback address) and
refuses anything else, so running it never exposes a server on the network. Pages come
from memory; tracking parameters are ignored the way a real shop ignores them, unknown
paths get the shop's 404 page.

    python -m examples.aqua.server --port 8765 [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from aiohttp import web

from examples.aqua.generate import Site, build_site

DEFAULT_PORT = 8765
_SITE_KEY = web.AppKey("site", Site)


async def _handle(request: web.Request) -> web.Response:
    site = request.app[_SITE_KEY]
    resource = site.lookup(request.path, request.query.items())
    return web.Response(
        status=resource.status,
        body=resource.body,
        headers={"Content-Type": resource.content_type, "Cache-Control": "no-store"},
    )


def make_app(site: Site) -> web.Application:
    """The aiohttp application answering every GET (and HEAD) from ``site``."""
    app = web.Application()
    app[_SITE_KEY] = site
    app.router.add_get("/{tail:.*}", _handle)
    return app


def _loopback_socket(host: str, port: int) -> socket.socket:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the Aqua shop binds loopback addresses only, not {host!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@asynccontextmanager
async def serve(site: Site, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``site`` while the block runs; yields the base URL (``http://127.0.0.1:PORT``).

    ``port=0`` picks a free port, which is what tests want; the socket is bound before
    the URL is yielded, so there is no window where the port could be taken.
    """
    sock = _loopback_socket(host, port)
    runner = web.AppRunner(
        make_app(site), access_log=None, handle_signals=False, shutdown_timeout=1.0
    )
    try:
        await runner.setup()
        await web.SockSite(runner, sock).start()
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield f"http://{shown}:{bound_port}"
    finally:
        await runner.cleanup()
        sock.close()


async def _run_forever(site: Site, host: str, port: int) -> None:
    async with serve(site, host, port) as base_url:
        print(f"Aqua shop (seed {site.seed}) at {base_url}/  (Ctrl-C to stop)", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    """Command line: serve the shop until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.aqua.server", description="Serve the Aqua demo shop."
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    with suppress(KeyboardInterrupt):
        asyncio.run(_run_forever(build_site(args.seed), args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
