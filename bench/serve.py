"""Serve a generated site on 127.0.0.1 for crawl benchmarks, and measure the server's ceiling.

nginx when it is installed (a generated nginx.conf in a temporary directory: daemon off,
``worker_processes auto``, ``access_log off``, sendfile, long keep-alive), else forked
aiohttp static servers sharing one listening socket. The ceiling is what a fast client
(``--load-procs`` processes of aiohttp, 32 requests in flight in all, bodies read, nothing
parsed) gets from it on this machine: no crawler can beat it, and on 2 cores client and
server share the CPU, so it is a bound, not a target.

    .venv/bin/python -m bench.serve [--pages 5000] [--seconds 0]   # serve until Ctrl-C
    .venv/bin/python -m bench.serve --ceiling                         # measure and exit
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from pathlib import Path
from types import TracebackType

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")

_NGINX_CONF = """\
{user}worker_processes auto;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{
        text/html html;
        text/css css;
        application/javascript js;
        text/plain txt;
        application/json json;
        image/png png;
        font/woff2 woff2;
    }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        index index.html;
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return next((c for c in NGINX_CANDIDATES if os.access(c, os.X_OK)), None)


def _wait_listening(port: int, deadline_s: float, alive: Callable[[], bool]) -> None:
    """Return once 127.0.0.1:``port`` accepts connections; raise if ``alive()`` turns false."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the benchmark server exited while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the benchmark server did not listen on 127.0.0.1:{port}")


class SiteServer:
    """``with SiteServer(root) as server: server.base_url`` -- nginx, else aiohttp processes."""

    def __init__(self, root: Path, *, prefer: str = "nginx", processes: int = 0) -> None:
        self.root = root.resolve()
        self.kind = prefer if prefer == "aiohttp" or find_nginx() else "aiohttp"
        self.processes = processes or os.cpu_count() or 1
        self.port = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._nginx: subprocess.Popen[bytes] | None = None
        self._procs: list[multiprocessing.process.BaseProcess] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> str:
        if self.kind == "nginx":
            return f"nginx (worker_processes auto = {os.cpu_count()}) {self.base_url}"
        return f"aiohttp static x{self.processes} processes {self.base_url}"

    def __enter__(self) -> SiteServer:
        if self.kind == "nginx":
            self._start_nginx()
        else:
            self._start_aiohttp()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._nginx is not None:
            self._nginx.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
            try:
                self._nginx.wait(10)
            except subprocess.TimeoutExpired:
                self._nginx.kill()
                self._nginx.wait()
            self._nginx = None
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            proc.join(10)
        self._procs = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _start_nginx(self) -> None:
        nginx = find_nginx()
        assert nginx is not None
        self._tmp = tempfile.TemporaryDirectory(prefix="trawl-bench-nginx-")
        tmp = Path(self._tmp.name)
        self.port = free_port()
        # As root, nginx's workers would switch to "nobody", who may not read the site.
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = tmp / "nginx.conf"
        conf.write_text(_NGINX_CONF.format(user=user, tmp=tmp, port=self.port, root=self.root))
        self._nginx = subprocess.Popen(
            [nginx, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        nginx_proc = self._nginx
        _wait_listening(self.port, 10, lambda: nginx_proc.poll() is None)

    def _start_aiohttp(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        ctx = multiprocessing.get_context("fork")  # the children inherit the socket
        for _ in range(self.processes):
            proc = ctx.Process(target=_aiohttp_serve, args=(sock, str(self.root)), daemon=True)
            proc.start()
            self._procs.append(proc)
        sock.close()
        _wait_listening(self.port, 20, lambda: all(p.is_alive() for p in self._procs))


def _aiohttp_serve(sock: socket.socket, root: str) -> None:
    from aiohttp import web

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(Path(root) / "index.html")

    async def run() -> None:
        app = web.Application()
        app.router.add_get("/", index)
        app.router.add_static("/", root)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(run())


# --- the ceiling ----------------------------------------------------------------------------------


# What one load client reports: pages ok, pages failed, bytes, its start and end (wall clock).
LoadResult = tuple[int, int, int, float, float]


def _load_worker(base_url: str, paths: list[str], concurrency: int, out: Queue[LoadResult]) -> None:
    import aiohttp

    async def run() -> LoadResult:
        started = time.time()  # wall clock: comparable across the client processes
        connector = aiohttp.TCPConnector(limit=concurrency)
        ok = failed = size = 0
        async with aiohttp.ClientSession(connector=connector) as session:
            it = iter(paths)

            async def worker() -> None:
                nonlocal ok, failed, size
                for path in it:
                    async with session.get(base_url + path) as resp:
                        body = await resp.read()
                    if resp.status == 200:
                        ok += 1
                        size += len(body)
                    else:
                        failed += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return ok, failed, size, started, time.time()

    out.put(asyncio.run(run()))


def measure_ceiling(
    base_url: str, paths: list[str], *, processes: int = 2, concurrency: int = 32
) -> dict[str, float]:
    """Fetch every path once from ``processes`` client processes; pages/s and MB/s."""
    ctx = multiprocessing.get_context("spawn")
    out: Queue[LoadResult] = ctx.Queue()
    shares = [paths[i::processes] for i in range(processes)]
    per_proc = max(1, concurrency // processes)
    procs = [
        ctx.Process(target=_load_worker, args=(base_url, share, per_proc, out)) for share in shares
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=600) for _ in procs]
    # From the first client's start to the last one's end: interpreter start-up excluded.
    elapsed = max(r[4] for r in results) - min(r[3] for r in results)
    for proc in procs:
        proc.join()
    ok = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    size = sum(r[2] for r in results)
    return {
        "pages": ok,
        "failed": failed,
        "seconds": round(elapsed, 3),
        "pages_per_s": round(ok / elapsed, 1),
        "mb_per_s": round(size / elapsed / 1e6, 1),
        "client_processes": processes,
        "concurrency": concurrency,
    }


def main(argv: list[str] | None = None) -> None:
    from bench.docsite import generate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=5000)
    parser.add_argument("--server", choices=("nginx", "aiohttp"), default="nginx")
    parser.add_argument("--ceiling", action="store_true", help="measure the ceiling and exit")
    parser.add_argument("--load-procs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    site = generate(args.pages)
    with SiteServer(site.root, prefer=args.server) as server:
        print(f"serving {site.root} with {server.describe()}", flush=True)
        if args.ceiling:
            paths = site.paths()
            for _ in range(args.repeat):
                print(measure_ceiling(server.base_url, paths, processes=args.load_procs))
            return
        # SIGTERM too (a background job ignores SIGINT): leave through __exit__, stop nginx.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
