"""Version diffs cover the rules and webhooks of the taxonomy document, and the console puts them in words."""

from __future__ import annotations

from dataclasses import replace

from console.changes import changes_in_words
from console.i18n import EN, ZH, translator
from core.taxonomy.diff import diff_versions
from tagging.rules import AddTag, All, HasTag, LacksTag, Notify, Rule, RuleSet, Trigger, Webhook
from tests.conftest import build_sample_taxonomy

VIP = Rule("VIP客户活跃", Trigger("daily"), All((HasTag("VIP客户"),)), (AddTag("活跃客户"),))
QUIET = Rule("沉默提醒", Trigger("message"), LacksTag("活跃客户"), (Notify(owner=True),), enabled=False)
HOOK = Webhook("crm", url="https://hooks.example.com/in?token=s3cret")


def _versions() -> tuple[RuleSet, RuleSet]:
    before = RuleSet((VIP, QUIET), (HOOK, Webhook("old", url_env="OLD_URL")))
    vip = replace(VIP, condition=All((HasTag("VIP客户"), LacksTag("沉默客户"))), priority=5, enabled=False)
    new = Rule("询价跟进", Trigger("tag", tags=("询价客户",)), All(()), (AddTag("企业客户", ttl_days=30),))
    after = RuleSet((vip, new), (replace(HOOK, url="https://hooks.example.com/v2?token=other", secret_env="S"),))
    return before, after


def test_rules_and_webhooks_added_removed_and_changed_field_by_field() -> None:
    before, after = _versions()
    base = build_sample_taxonomy()
    diff = diff_versions(replace(base, rules=before), replace(base, rules=after))
    assert diff.tags == ()
    assert [(d.name, d.kind, d.fields) for d in diff.rules] == [
        ("VIP客户活跃", "changed", ("condition", "enabled", "priority")),
        ("询价跟进", "added", ()),
        ("沉默提醒", "removed", ()),
    ]
    assert [(d.name, d.kind, d.fields) for d in diff.webhooks] == [
        ("crm", "changed", ("url", "secret_env")),
        ("old", "removed", ()),
    ]
    assert len(diff) == 5
    assert len(diff_versions(replace(base, rules=after), replace(base, rules=after))) == 0


def test_changes_in_words_in_chinese_and_english_without_query_tokens() -> None:
    before, after = _versions()
    base = build_sample_taxonomy()
    diff = diff_versions(replace(base, rules=before), replace(base, rules=after))
    zh = changes_in_words(diff, translator(ZH))
    vip = zh.rules[0]
    assert vip.changes == (
        ("条件", "持有标签 VIP客户", "持有标签 VIP客户 且 没有标签 沉默客户"),
        ("启用", "启用", "未启用"),
        ("优先级", "—", "5"),
    )
    assert zh.rules[1].summary.startswith("标签变化：询价客户 · 总是 → 添加 企业客户")
    assert zh.rules[2].kind == "removed" and "未启用" in zh.rules[2].summary
    hook = zh.webhooks[0].changes
    assert hook[0] == ("地址", "https://hooks.example.com/in?…", "https://hooks.example.com/v2?…")
    assert hook[1] == ("签名密钥环境变量", "—", "S")
    assert "s3cret" not in repr(zh) and zh.webhooks[1].summary == "$OLD_URL"
    en = changes_in_words(diff, translator(EN))
    assert en.rules[0].changes[0] == ("Condition", "holds VIP客户", "holds VIP客户 and lacks 沉默客户")
    assert en.rules[1].summary.startswith("tag change: 询价客户 · always → ")
