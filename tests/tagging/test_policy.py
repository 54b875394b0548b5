"""Pure tagging policy: expiry, today tags, exclusivity, caps, visibility, PII, lookup."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tagging.policy import (
    SOFT_CAP,
    AmbiguousTagError,
    HeldTag,
    Holding,
    PolicyRefusal,
    decide_apply,
    find_tag,
    next_local_midnight,
    refuse_pii,
    visible_dimension_keys,
)
from tagging.taxonomy import Taxonomy

SH = ZoneInfo("Asia/Shanghai")


def test_midnight_is_local_not_utc() -> None:
    now = datetime(2025, 3, 1, 17, 0, tzinfo=UTC)  # 01:00 on 2 March in Shanghai
    assert next_local_midnight(now, SH) == datetime(2025, 3, 3, tzinfo=SH)


def test_soft_warning_and_hard_cap(sample_taxonomy: Taxonomy) -> None:
    dim, tag = find_tag(sample_taxonomy, "活跃客户")
    held = [HeldTag("basic", f"标签{i}") for i in range(SOFT_CAP - 1)]
    assert decide_apply(dim, tag, Holding.of(held), datetime(2025, 1, 1, tzinfo=SH), SH).warnings
    with pytest.raises(PolicyRefusal, match="上限 19"):
        decide_apply(dim, tag, Holding.of(held), datetime(2025, 1, 1, tzinfo=SH), SH, hard_cap=19)


def test_exclusive_replaces_only_same_dimension(sample_taxonomy: Taxonomy) -> None:
    dim, tag = find_tag(sample_taxonomy, "VIP客户")
    held = [HeldTag("value", "普通客户"), HeldTag("stage", "询价客户")]
    decision = decide_apply(dim, tag, Holding.of(held), datetime(2025, 1, 1, tzinfo=SH), SH)
    assert decision.replaces == (HeldTag("value", "普通客户"),) and not decision.renew


def test_visibility_and_pii(sample_taxonomy: Taxonomy) -> None:
    assert "risk" not in visible_dimension_keys(sample_taxonomy, sees_sensitive=False)
    assert "risk" in visible_dimension_keys(sample_taxonomy, sees_sensitive=True)
    with pytest.raises(PolicyRefusal, match="personal data"):
        refuse_pii("客户手机 13812345678 请回电")
    refuse_pii("客户对报价满意")


def test_lookup_is_forgiving_and_dimension_qualified(sample_taxonomy: Taxonomy) -> None:
    assert find_tag(sample_taxonomy, " ｖｉｐ客户 ")[1].name == "VIP客户"
    assert find_tag(sample_taxonomy, "value:VIP客户")[0].key == "value"
    assert issubclass(AmbiguousTagError, LookupError)
