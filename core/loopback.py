"""Loopback addresses: where an unauthenticated (emulator-mode) bot may listen and send its replies."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOCALHOST_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the localhost names; never resolves a name (no DNS)."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name in LOCALHOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str | None) -> bool:
    """True when `url` is an http(s) URL whose host is a loopback address."""
    try:
        parts = urlsplit(url or "")
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and host is not None and is_loopback_host(host)
