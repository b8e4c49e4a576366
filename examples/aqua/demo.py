"""``make demo``: serve the Aqua shop on 127.0.0.1, crawl it with ``trawl run``, show the result.

The shop runs in a child process on port 8765 (the start URL of aqua.yaml) or, when that
port is taken, on a free one with the start URL overridden to match. The crawl is the real
command a user types, so what the demo prints is what ``trawl run`` prints.

    python -m examples.aqua.demo [--engine http|browser] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from examples.aqua.server import DEFAULT_PORT

HERE = Path(__file__).resolve().parent
WORKFLOWS = {"browser": HERE / "aqua.yaml", "http": HERE / "aqua-http.yaml"}


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(port: int, server: subprocess.Popen[bytes], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"demo: the shop server exited with code {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"demo: the shop server did not listen on 127.0.0.1:{port} in time")


def _trawl() -> str:
    beside = Path(sys.executable).with_name("trawl")
    return str(beside) if beside.exists() else (shutil.which("trawl") or "trawl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.aqua.demo")
    parser.add_argument("--engine", choices=sorted(WORKFLOWS), default="browser")
    parser.add_argument("--out", default="out/aqua")
    args = parser.parse_args(argv)

    port = DEFAULT_PORT if _port_free(DEFAULT_PORT) else _free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"demo: serving the Aqua shop at {base}/", flush=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "examples.aqua.server", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, server, deadline_s=20.0)
        command = [_trawl(), "run", str(WORKFLOWS[args.engine]), "--out", args.out]
        if port != DEFAULT_PORT:
            command += ["--set", f"start_urls=[{base}/]"]
        print("demo: $ " + " ".join(command), flush=True)
        code = subprocess.call(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        server.terminate()
        server.wait(timeout=10)
    if code != 0:
        print(f"demo: trawl run exited with {code}", file=sys.stderr)
        return code
    _show(Path(args.out))
    return 0


def _show(out: Path) -> None:
    from trawl.local_outputs import exported_records

    exports = sorted(out.glob("*/export/manifest.json"), key=lambda p: p.stat().st_mtime)
    if not exports:
        print(f"demo: no export under {out}", file=sys.stderr)
        return
    manifest = exports[-1]
    records = exported_records(manifest.parent.parent)
    print()
    print(f"Records:  {manifest.parent / 'records'}/ (phase=<phase>/part-*.jsonl.gz, .parquet)")
    print(f"Manifest: {manifest}")
    print(f"Summary:  {manifest.with_name('summary.json')}")
    print(f"Parts:    {manifest.parent.parent / 'parts'}/")
    print(f"Read it:  trawl export {manifest.parent.parent} [--format csv|parquet -o FILE]")
    if records:
        print("One record:")
        print(json.dumps(records[0], indent=2, ensure_ascii=False))


if __name__ == "__main__":
    raise SystemExit(main())
