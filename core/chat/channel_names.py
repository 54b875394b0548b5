"""The channel-name convention "[VIP]ABC公司-合同续约中": core tag, customer, stage.

Pure: reading a channel name into its parts (None for anything that is not the shape, near misses included),
and writing the conventional name of a customer from the tags they hold.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from core.tags.summary import CustomerSummary

MAX_NAME = 200
CORE_DIMENSION = "value"  # 价值等级: VIP客户, 普通客户 …
STAGE_DIMENSION = "stage"  # 需求阶段: 询价客户, 合同续约中 …
_SHAPE = re.compile(r"\[([^\[\]]{1,40})\]([^\[\]]+?)-([^\[\]]+)")


@dataclass(frozen=True, slots=True)
class ChannelName:
    core: str
    customer: str
    stage: str


def parse_channel_name(name: object) -> ChannelName | None:
    """The parts of a conventional channel name, or None (full-width brackets and dashes count as ASCII).

    The customer runs to the last "-", so a name with a dash ("Coca-Cola") keeps it; every part must be
    non-empty after trimming.
    """
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        return None
    text = unicodedata.normalize("NFKC", name).strip().replace("【", "[").replace("】", "]")
    text = re.sub(r"[‐‑‒–—―−]", "-", text)
    match = _SHAPE.fullmatch(text)
    if match is None:
        return None
    core, rest = match.group(1).strip(), text[match.end(1) + 1 :]
    customer, _, stage = rest.rpartition("-")
    customer, stage = customer.strip(), stage.strip()
    if not core or not customer or not stage:
        return None
    return ChannelName(core, customer, stage)


def conventional_name(summary: CustomerSummary) -> str:
    """"[core tag]customer-stage" from the tags the summary shows; a part without a tag is left out."""
    groups = {g.key: g for g in summary.groups}
    core = groups.get(CORE_DIMENSION)
    stage = groups.get(STAGE_DIMENSION)
    out = f"[{core.tags[0].name}]" if core and core.tags else ""
    out += summary.customer.name
    if stage and stage.tags:
        out += f"-{stage.tags[-1].name}"
    return out
