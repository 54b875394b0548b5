"""Fixtures for the WeCom channel tests; other test folders can import `fake_wecom` the same way."""

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.wecom.fake_api import fake_wecom

__all__ = ["fake_wecom", "session"]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for WeComClient instances built by a test."""
    async with aiohttp.ClientSession() as s:
        yield s
