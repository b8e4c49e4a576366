"""The browser engine's guard proxy relays on a thread of its own: a connection through it
works while the event loop that started it is busy, and it still refuses what the guard
refuses."""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from worker.fetchers.browser import GuardProxy
from worker.netguard import NetGuard

pytestmark = pytest.mark.asyncio


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _socks_connect(proxy_url: str, host: str, port: int) -> tuple[socket.socket, int]:
    """Open a SOCKS5 CONNECT to host:port through the proxy (blocking); the socket and the
    reply code (0: connected)."""
    proxy_port = int(proxy_url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    sock.sendall(b"\x05\x01\x00")
    assert sock.recv(2) == b"\x05\x00"
    name = host.encode()
    sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
    reply = sock.recv(10)
    return sock, reply[1]


async def test_relays_while_the_event_loop_that_started_it_is_busy(echo_port: int) -> None:
    proxy = GuardProxy(NetGuard.allow_all())
    url = await proxy.start()
    try:
        echoed: list[bytes] = []
        done = threading.Event()

        def client() -> None:
            sock, code = _socks_connect(url, "127.0.0.1", echo_port)
            with sock:
                assert code == 0
                payload = b"x" * 200_000
                sock.sendall(payload)
                got = b""
                while len(got) < len(payload):
                    got += sock.recv(65536)
                echoed.append(got)
            done.set()

        threading.Thread(target=client, daemon=True).start()
        # The loop that started the proxy is blocked here (as by a long node chain): the
        # whole exchange must happen without it.
        assert done.wait(timeout=10)
        assert echoed == [b"x" * 200_000]
    finally:
        await proxy.close()


async def test_refuses_an_address_the_guard_refuses_and_says_why(echo_port: int) -> None:
    proxy = GuardProxy(NetGuard())  # loopback refused
    url = await proxy.start()
    try:
        sock, code = await asyncio.to_thread(_socks_connect, url, "127.0.0.1", echo_port)
        sock.close()
        assert code == 2  # connection not allowed by ruleset
        failure = proxy.failure(f"http://127.0.0.1:{echo_port}/page")
        assert str(failure) == (
            "127.0.0.1 is a loopback address; add the network or host to "
            "TRAWL_ALLOW_NETWORKS to allow it"
        )
    finally:
        await proxy.close()
    await proxy.close()  # twice is fine


async def test_closing_with_a_lookup_in_flight_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Chromium may still be opening connections when the crawl ends: the proxy cuts them
    # quietly (asyncio would log a cancelled connection handler as an error).
    asked = threading.Event()

    async def hanging_resolver(host: str) -> list[str]:
        asked.set()
        await asyncio.Event().wait()  # a lookup that never answers
        return []

    proxy = GuardProxy(NetGuard(resolver=hanging_resolver))
    url = await proxy.start()
    sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10)
    try:
        sock.sendall(b"\x05\x01\x00")
        assert await asyncio.to_thread(sock.recv, 2) == b"\x05\x00"
        sock.sendall(b"\x05\x01\x00\x03\x0cslow.example\x00\x50")
        assert await asyncio.to_thread(asked.wait, 10)
        await proxy.close()
        assert await asyncio.to_thread(sock.recv, 10) == b""  # cut, no reply
    finally:
        sock.close()
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
