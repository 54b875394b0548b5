"""Peak memory of `kebiao serve` with the built-in taxonomy and with a 10,000-keyword taxonomy loaded."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from bench import corpus
from tagging.loader import dump_taxonomy


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _peak_rss_mib(pid: int) -> float:
    """VmHWM: the highest resident set size the process has reached."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status (Linux only)")


def _serve_peak(taxonomy_file: Path | None, workdir: Path, timeout: float = 120.0) -> tuple[float, float]:
    """Start `kebiao serve`, wait until /readyz answers 200; return (seconds to ready, peak RSS MiB)."""
    port = _free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "KEBIAO_SCHEDULER": "off",
        "KEBIAO_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / f'serve-{port}.db'}",
    }
    env.pop("KEBIAO_TAXONOMY", None)
    if taxonomy_file is not None:
        env["KEBIAO_TAXONOMY"] = str(taxonomy_file)
    kebiao = Path(sys.executable).with_name("kebiao")
    started = time.perf_counter()
    process = subprocess.Popen([str(kebiao), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - started < timeout:
            if process.poll() is not None:
                raise RuntimeError(f"kebiao serve exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                    if response.status == 200:
                        ready = time.perf_counter() - started
                        return ready, _peak_rss_mib(process.pid)
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("kebiao serve did not become ready in time")
    finally:
        process.terminate()
        process.wait(timeout=30)


def main(argv: Sequence[str]) -> int:
    """Print time-to-ready and peak RSS of `kebiao serve` for the built-in and a 10,000-keyword taxonomy."""
    parser = argparse.ArgumentParser(prog="python -m bench serve")
    parser.add_argument("--keywords", type=int, default=10_000, help="size of the generated taxonomy")
    options = parser.parse_args(list(argv))
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        big = workdir / "taxonomy.yaml"
        big.write_text(dump_taxonomy(corpus.taxonomy(options.keywords)), encoding="utf-8")
        base_ready, base_peak = _serve_peak(None, workdir)
        big_ready, big_peak = _serve_peak(big, workdir)
    print("kebiao serve (SQLite, scheduler off), peak resident memory until /readyz answers 200:")
    big_label = f"{options.keywords:,}-keyword taxonomy"
    print(f"  {'built-in taxonomy':<26}: {base_peak:7.1f} MiB, ready in {base_ready:5.2f} s")
    print(f"  {big_label:<26}: {big_peak:7.1f} MiB, ready in {big_ready:5.2f} s")
    print(f"  {'ratio':<26}: {big_peak / base_peak:7.2f}x")
    return 0
