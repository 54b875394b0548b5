"""`kebiao manifest build`: the Teams app package."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from cli.common import Verbs

if TYPE_CHECKING:
    from config import Settings


def register(verbs: Verbs) -> None:
    """The `kebiao manifest build` verb."""
    group = verbs.add_parser("manifest", help="build the Teams app package", description="Teams app package.")
    sub = group.add_subparsers(dest="manifest_action", metavar="ACTION", required=True)
    build = sub.add_parser(
        "build",
        help="write the Teams app package zip (manifest.json, color.png, outline.png)",
        description="Write the Teams app package for upload to Teams. The app id (a GUID) defaults to "
        "MICROSOFT_APP_ID; exits 1 when it is missing or not a GUID.",
    )
    build.add_argument("--app-id", metavar="GUID", help="bot app id (default: MICROSOFT_APP_ID)")
    build.add_argument(
        "--host",
        metavar="HOST",
        help="where Kebiao is reached over HTTPS (default: KEBIAO_PUBLIC_HOST); adds the 客标管理 console tab "
        "with Teams single sign-on",
    )
    build.add_argument("--out", metavar="FILE.zip", default="kebiao.zip", help="output (default: kebiao.zip)")
    build.set_defaults(handler=cmd_build)


def cmd_build(args: argparse.Namespace, settings: Settings) -> int:
    """Write the Teams app package (manifest.json + icons) for the bot's app id."""
    from manifest.build import ManifestError, write_package

    app_id = args.app_id or settings.teams.app_id
    if not app_id:
        print("kebiao manifest build: no app id; pass --app-id GUID or set MICROSOFT_APP_ID", file=sys.stderr)
        return 1
    try:
        out = write_package(args.out, app_id, host=args.host or settings.console.public_host or None)
    except ManifestError as exc:
        print(f"kebiao manifest build: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0
