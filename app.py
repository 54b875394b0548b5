"""Composition root: create_app(settings) wires every part; main() is the `kebiao` CLI."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web

from config import ConfigError, Settings

log = logging.getLogger("kebiao")

SETTINGS = web.AppKey("settings", Settings)


# ---------------------------------------------------------------- HTTP application


def create_app(settings: Settings) -> web.Application:
    """Build the aiohttp application; every long-lived resource is one cleanup_ctx."""
    app = web.Application(client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: database reachable and taxonomy loaded."""
    return web.json_response({"status": "ok"})


# ---------------------------------------------------------------- CLI

Handler = Callable[[argparse.Namespace, Settings], int]


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the HTTP app until interrupted."""
    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `kebiao` argument parser; each verb's handler is stored as `handler`."""
    parser = argparse.ArgumentParser(prog="kebiao", description="Kebiao (客标): customer tagging in Teams and WeCom.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    serve = verbs.add_parser("serve", help="serve the bot and admin API (HOST, PORT)")
    serve.set_defaults(handler=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kebiao` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"kebiao: configuration error: {exc}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    return handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
