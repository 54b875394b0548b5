"""Shared fixtures: sample views with Chinese data and the optional Adaptive Card schema."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "adaptive-card-1.5.json"
TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 3, 1, 9, 30, tzinfo=TZ)


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture(scope="session")
def card_validator() -> Any:
    """jsonschema validator for Adaptive Cards 1.5; skipped when ../shared/schemas is absent."""
    if not SCHEMA.is_file():
        pytest.skip(f"Adaptive Card 1.5 schema not found at {SCHEMA} (optional reference folder)")
    import jsonschema

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def in_days(days: int) -> datetime:
    return NOW + timedelta(days=days)


CONTRACT_END = date(2025, 3, 31)
