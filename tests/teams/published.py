"""Activities published in Microsoft's Teams platform documentation (tests/payloads/teams/published/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PUBLISHED = Path(__file__).resolve().parent.parent / "payloads" / "teams" / "published"


def published_names() -> list[str]:
    """Every published payload, by file stem."""
    return sorted(path.stem for path in PUBLISHED.glob("*.json"))


def load_published(name: str, service_url: str) -> dict[str, Any]:
    """A published activity as published, except `serviceUrl`, which points at the fake Bot Connector."""
    data: dict[str, Any] = json.loads((PUBLISHED / f"{name}.json").read_text(encoding="utf-8"))
    data["serviceUrl"] = service_url
    return data
