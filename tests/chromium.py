"""Debian's Chromium for the browser tests: where it is, how it starts, and fail-or-skip when it is missing.

With KEBIAO_TEST_BROWSER set (as `.ci/run` does) a missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("KEBIAO_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps reaching for hosts a closed network refuses.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def fail_or_skip(message: str) -> None:
    """Fail under KEBIAO_TEST_BROWSER, skip otherwise (saying how to make it a failure)."""
    if os.environ.get("KEBIAO_TEST_BROWSER"):
        pytest.fail(message)
    pytest.skip(message + " (set KEBIAO_TEST_BROWSER=1 to make this a failure)")


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A launched headless Chromium (Playwright driving Debian's package)."""
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        fail_or_skip(f"Chromium not found at {CHROMIUM}; install it with `apt-get install -y chromium`")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()
