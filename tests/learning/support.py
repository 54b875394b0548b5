"""Small generated training data for the learning tests (never a downloaded data set)."""

from __future__ import annotations

import random

# Phrases that mean a tag without using its keyword (the sample taxonomy's 询价客户 keywords are 报价/询价/多少钱).
PRICE = ["这个怎么卖", "能便宜一点吗", "有没有优惠", "单价能再低点吗", "批量买打几折", "给个最低价吧"]
REPAIR = ["机器开不了机", "屏幕一直闪", "用了两天就坏", "按键没反应", "充不进电了", "一直死机重启"]
CHAT = ["你好", "谢谢", "好的收到", "明天再聊", "在吗", "辛苦了", "周末愉快", "我看一下"]


def messages(count: int, seed: int = 7) -> list[tuple[str, str | None]]:
    """(text, meaning) pairs: 'price', 'repair' or None for small talk."""
    rng = random.Random(seed)
    out: list[tuple[str, str | None]] = []
    for _ in range(count):
        kind = rng.choice(["price", "repair", None])
        pool = PRICE if kind == "price" else REPAIR if kind == "repair" else CHAT
        out.append((f"{rng.choice(CHAT)}，{rng.choice(pool)}", kind))
    return out
