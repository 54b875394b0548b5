"""The manager console under /console: server-rendered pages, sign-in, security headers, static assets."""

from __future__ import annotations

import hashlib
from pathlib import Path


def _asset_version() -> str:
    """Changes whenever a console asset changes, so browsers never keep a stale script."""
    digest = hashlib.sha256()
    for path in sorted((Path(__file__).resolve().parent / "static").glob("*.*")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


ASSET_VERSION = _asset_version()
