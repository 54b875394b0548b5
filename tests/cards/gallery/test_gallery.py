"""Every card kind drawn by Microsoft's Adaptive Cards renderer in headless Chromium, at Teams' 400 px.

The renderer (npm `adaptivecards`, MIT, vendored in ./vendor so no test needs the network) draws each card
of the gallery with a Teams-like light host config. The check fails when a button title is cut to an
ellipsis, a text line is clipped, or anything sticks out of the card, first as sent and again with every
toggle opened. KEBIAO_TEST_BROWSER set (CI): a missing Chromium or Chinese font fails these tests; unset:
they are skipped without them. KEBIAO_SCREENSHOTS=DIR keeps a PNG of each card there (else a temp dir).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.cards.gallery.samples import gallery
from tests.chromium import chromium, fail_or_skip

HERE = Path(__file__).resolve().parent
RENDERER = HERE / "vendor" / "adaptivecards-3.0.6.min.js"
HOST_CONFIG = json.loads((HERE / "teams-light.json").read_text(encoding="utf-8"))
CSS = (HERE / "teams.css").read_text(encoding="utf-8")
WIDTH = 400

RENDER = """([card, host]) => {
  const frame = document.createElement("div");
  frame.className = "frame";
  const adaptive = new AdaptiveCards.AdaptiveCard();
  adaptive.hostConfig = new AdaptiveCards.HostConfig(host);
  const context = new AdaptiveCards.SerializationContext();
  adaptive.parse(card, context);
  const events = [];
  for (let i = 0; i < context.eventCount; i++) events.push(context.getEventAt(i).message);
  frame.appendChild(adaptive.render());
  document.body.appendChild(frame);
  return events;
}"""

# Problems of the rendered card: anything outside the card's box, content wider than its box, text clipped
# at the bottom, and button titles cut to an ellipsis. Hidden elements (toggled off) are skipped.
CHECK = """() => {
  const root = document.querySelector(".frame > .ac-adaptiveCard");
  const box = root.getBoundingClientRect();
  const out = [];
  const name = (el) =>
    `${el.tagName.toLowerCase()}.${el.className || ""} «${(el.innerText || "").trim().slice(0, 50)}»`;
  const shown = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
  for (const el of [root, ...root.querySelectorAll("*")]) {
    if (!shown(el)) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.left < box.left - 0.5 || r.right > box.right + 0.5) {
      const span = `${Math.round(r.left - box.left)}..${Math.round(r.right - box.left)} px`;
      out.push(`sticks out (${span} of ${Math.round(box.width)}): ${name(el)}`);
    }
    const style = getComputedStyle(el);
    if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
      out.push(`wider than its box (${el.scrollWidth} > ${el.clientWidth} px): ${name(el)}`);
    }
    if (style.overflowY !== "visible" && el.clientHeight > 0 && el.scrollHeight > el.clientHeight + 1) {
      out.push(`cut off at the bottom (${el.scrollHeight} > ${el.clientHeight} px): ${name(el)}`);
    }
    if (el.closest("button") && style.textOverflow === "ellipsis" && el.scrollWidth > el.clientWidth) {
      out.push(`button title cut to an ellipsis: ${name(el)}`);
    }
  }
  return [...new Set(out)];
}"""

# Press every visible button titled like an opening toggle of the card: opens each section once.
OPEN_TOGGLES = """(titles) => {
  const opened = [];
  for (const button of [...document.querySelectorAll(".frame button")]) {
    const title = button.innerText.trim();
    if (button.getClientRects().length > 0 && titles.includes(title)) {
      opened.push(title);
      button.click();
    }
  }
  return opened;
}"""


def _openers(node: Any) -> list[str]:
    """Titles of the toggles that open something (the ActionSets first shown, `…-show`)."""
    if isinstance(node, list):
        return [t for item in node for t in _openers(item)]
    if not isinstance(node, dict):
        return []
    own = [a["title"] for a in node["actions"]] if str(node.get("id", "")).endswith("-show") else []
    return own + [t for key, value in node.items() if key != "data" for t in _openers(value)]


VISIBLE_BUTTONS = """() => [...document.querySelectorAll(".frame button")]
  .filter((b) => b.getClientRects().length > 0).map((b) => b.innerText.trim())"""


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    fonts = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False).stdout
    if not fonts.strip():
        fail_or_skip("no Chinese font, so widths would be wrong; install one: `apt-get install -y fonts-wqy-microhei`")
    async with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("KEBIAO_SCREENSHOTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("card-gallery")
    path.mkdir(parents=True, exist_ok=True)
    return path


async def _render(browser: Any, card: dict[str, Any]) -> tuple[Any, list[str]]:
    """A fresh page holding the rendered card; returns it with the renderer's parse messages."""
    page = await browser.new_page(viewport={"width": WIDTH + 32, "height": 800}, locale="zh-CN")
    await page.set_content(
        f"<!doctype html><html><head><meta charset='utf-8'><style>{CSS}</style></head><body></body></html>"
    )
    await page.add_script_tag(path=str(RENDERER))
    events = await page.evaluate(RENDER, [card, HOST_CONFIG])
    return page, events


async def _problems(page: Any, kind: str, shots: Path) -> list[str]:
    await page.screenshot(path=str(shots / f"{kind}.png"), full_page=True)
    return [f"{kind}: {p}" for p in await page.evaluate(CHECK)]


async def test_every_card_reads_whole_at_400px(browser: Any, shots: Path) -> None:
    found: list[str] = []
    opened_any = False
    for kind, card in gallery():
        page, events = await _render(browser, card)
        try:
            found.extend(f"{kind}: renderer says {e}" for e in events)
            found.extend(await _problems(page, kind, shots))
            opened = await page.evaluate(OPEN_TOGGLES, _openers(card))
            if opened:
                opened_any = True
                found.extend(await _problems(page, f"{kind}-open", shots))
        finally:
            await page.close()
    assert opened_any, "no card opened a toggle: the gallery lost its sub-tags or long digest"
    assert not found, f"{len(found)} problems (screenshots in {shots}):\n" + "\n".join(found[:40])


async def test_toggle_label_reads_right_open_and_closed(browser: Any, shots: Path) -> None:
    card = dict(gallery())["summary-agent"]
    page, _ = await _render(browser, card)
    try:
        before = await page.evaluate(VISIBLE_BUTTONS)
        assert "显示子标签（6）" in before and "收起子标签" not in before
        await page.get_by_role("button", name="显示子标签（6）").click()
        after = await page.evaluate(VISIBLE_BUTTONS)
        assert "收起子标签" in after and "显示子标签（6）" not in after
        assert await page.get_by_text("子标签_0 长长长长长长长长长长长长长长名称 (sub #0)").is_visible()
    finally:
        await page.close()


BAD = {
    "type": "AdaptiveCard",
    "version": "1.5",
    "body": [
        {"type": "TextBlock", "text": "一行不换行的很长很长很长的文字，" * 4, "wrap": False},
        {
            "type": "ActionSet",
            "actions": [{"type": "Action.Submit", "title": f"华为技术有限公司（深圳）#{i}"} for i in range(4)],
        },
        {
            "type": "ColumnSet",
            "columns": [{"type": "Column", "width": "300px", "items": [{"type": "TextBlock", "text": "x"}]}] * 2,
        },
    ],
}


async def test_the_check_catches_cut_buttons_lines_and_overflow(browser: Any, shots: Path) -> None:
    page, _ = await _render(browser, BAD)
    try:
        found = await _problems(page, "bad-card", shots)
    finally:
        await page.close()
    assert any("button title cut" in p for p in found), found
    assert any("wider than its box" in p and "一行不换行" in p for p in found), found
    assert any("sticks out" in p for p in found), found
