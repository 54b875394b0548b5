"""`kebiao serve`: the bot, the WeCom callback and the admin API on HOST:PORT."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from cli.common import Verbs

if TYPE_CHECKING:
    from config import Settings


def register(verbs: Verbs) -> None:
    """Add the `serve` verb."""
    serve = verbs.add_parser(
        "serve",
        help="serve the bot and admin API on HOST:PORT (default 127.0.0.1:3978 without MICROSOFT_APP_ID)",
        description="Serve the Teams bot (POST /api/messages), the WeCom callback (/wecom/callback) when "
        "WECOM_CORP_ID, WECOM_TOKEN and WECOM_ENCODING_AES_KEY are set, the admin API (/admin/v1) when "
        "KEBIAO_ADMIN_TOKEN is set, and /healthz, /readyz. Listens on the HOST and PORT environment variables "
        "(default 0.0.0.0:3978 with MICROSOFT_APP_ID set, else 127.0.0.1:3978: without credentials only a loopback "
        "HOST is accepted unless KEBIAO_ALLOW_UNAUTHENTICATED=1, see docs/security.md). The database "
        "(KEBIAO_DATABASE_URL, default ./data/kebiao.db) is created or migrated on start, and the taxonomy "
        "(KEBIAO_TAXONOMY or the built-in one) is stored on first start. "
        "Without MICROSOFT_APP_ID the bot runs in emulator mode with no authentication and replies only to "
        "loopback service URLs; KEBIAO_ENV=production refuses that. One log line says what is on once it is "
        "ready. See docs/configuration.md and docs/deployment.md.",
        epilog="example: HOST=127.0.0.1 PORT=8080 kebiao serve",
    )
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the HTTP app until interrupted; a busy port or an unusable database is one line and exit 1."""
    from aiohttp import web

    from app import create_app, settle_heap
    from config import ConfigError, check_serve
    from storage.database import DatabaseError

    try:
        check_serve(settings)
    except ConfigError as exc:
        print(f"kebiao: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        app = create_app(settings)
        app.on_startup.append(settle_heap)  # after every resource started: dictionary and matcher loaded
        web.run_app(app, host=settings.host, port=settings.port, print=None)
    except DatabaseError as exc:
        print(f"kebiao serve: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # Raised by bind(): the port is taken, the host is not an address of this machine, or no permission.
        reason = exc.strerror or str(exc)
        print(
            f"kebiao serve: cannot listen on {settings.host}:{settings.port}: {reason}; stop the other process "
            "or choose another PORT / HOST",
            file=sys.stderr,
        )
        return 1
    return 0
