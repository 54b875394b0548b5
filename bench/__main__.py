"""`python -m bench NAME [args…]`: run a named benchmark; new benchmarks register in BENCHMARKS."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

# name -> "module:function"; each function takes the remaining argv and returns an exit code.
BENCHMARKS: dict[str, str] = {
    "tagging": "bench.tagging:main",
    "alerts": "bench.alerts:main",
    "wecom": "bench.wecom:main",
    "serve": "bench.serve:main",
    "teams": "bench.teams:main",
    "startup": "bench.startup:main",
    "hostile": "bench.hostile:main",
    "crash": "bench.crash:main",
    "rules": "bench.rules:main",
    "console": "bench.console:main",
    "learn": "bench.learn:main",
    "crm": "bench.crm:main",
    "imports": "bench.imports:main",
    "replicas": "bench.replicas:main",
    "burst": "bench.burst:main",
    "scale": "bench.scale:main",
    "leases": "bench.leases:main",
    "counts": "bench.tag_counts:main",
}


def _resolve(target: str) -> Callable[[Sequence[str]], int]:
    module, _, function = target.partition(":")
    runner: Callable[[Sequence[str]], int] = getattr(importlib.import_module(module), function)
    return runner


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the benchmark named on the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description="Kebiao benchmarks.")
    parser.add_argument("name", nargs="?", choices=sorted(BENCHMARKS), help="benchmark to run (default: all)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if options.name is None:
        failed = 0
        for name, target in BENCHMARKS.items():
            print(f"\n== {name} ==", flush=True)
            try:
                failed += _resolve(target)([]) != 0
            except SystemExit as exc:  # a benchmark that needs arguments (scale: --postgres) says so and the rest run
                failed += exc.code not in (0, None)
        return 1 if failed else 0
    return _resolve(BENCHMARKS[options.name])(options.args)


if __name__ == "__main__":
    sys.exit(main())
