"""The rules: and webhooks: sections of the taxonomy file: parsing, every problem in one run, round trips."""

from __future__ import annotations

import pytest

from storage.taxonomy_document import from_document, to_document
from tagging.builtin import TEMPLATES, load_builtin
from tagging.loader import TaxonomyError, dump_taxonomy, load_taxonomy_text
from tagging.rules import AddTag, CallWebhook, Events, Notify

BASE = """
version: 1
dimensions:
  - key: value
    name: 价值等级
    exclusive: true
    tags:
      - name: VIP客户
      - name: 普通客户
  - key: behavior
    name: 行为特征
    tags:
      - name: 活跃客户
      - name: 沉默客户
"""


def load(extra: str):  # type: ignore[no-untyped-def]
    return load_taxonomy_text(BASE + extra, source="t.yaml")


def problems(extra: str) -> list[str]:
    with pytest.raises(TaxonomyError) as caught:
        load(extra)
    return [f"{p.path}: {p.reason}" for p in caught.value.problems]


def test_the_builtin_rules_load_with_every_template() -> None:
    taxonomy = load_builtin()
    names = [r.name for r in taxonomy.rules.rules]
    assert "服务到期未续费" in names and "退款售后" in names and len(names) == 9
    contract = next(r for r in taxonomy.rules.rules if r.name == "服务到期未续费")
    assert contract.trigger.kind == "daily"
    assert (
        AddTag("高危流失") in contract.actions
        and Notify(managers=True, title="服务即将到期且未续费") in contract.actions
    )
    refund = next(r for r in taxonomy.rules.rules if r.name == "退款售后")
    assert CallWebhook("tickets") in refund.actions
    for template in TEMPLATES:
        assert len(load_builtin(template).rules.rules) == 9


def test_rules_survive_export_and_storage_round_trips() -> None:
    taxonomy = load_builtin()
    again = load_taxonomy_text(dump_taxonomy(taxonomy), source="export.yaml")
    assert again.rules == taxonomy.rules
    assert from_document(to_document(taxonomy), 7).rules == taxonomy.rules
    json_again = load_taxonomy_text(dump_taxonomy(taxonomy, "json"), source="export.json")
    assert json_again.rules == taxonomy.rules


def test_a_rule_reads_its_trigger_condition_and_actions() -> None:
    taxonomy = load("""
rules:
  - name: 买得多
    trigger: {event: [purchase, order]}
    when:
      all:
        - events: {kind: purchase, days: 30, count: "> 3"}
        - not: {has: {tag: 沉默客户, min_days: 3}}
    then:
      - add: 活跃客户
        ttl_days: 10
        to: contacts
""")
    [rule] = taxonomy.rules.rules
    assert rule.trigger.event_kinds == ("purchase", "order")
    assert rule.actions == (AddTag("活跃客户", 10, True),)
    first = rule.condition.items[0]  # type: ignore[union-attr]
    assert isinstance(first, Events) and first.count is not None and str(first.count) == "> 3"


def test_every_problem_is_listed_in_one_run() -> None:
    found = problems("""
webhooks:
  - name: tickets
    url: http://tickets.example.com/hook
  - name: crm
    url: https://crm.example.com/hook
    secret: hunter2
  - name: local
    url: http://127.0.0.1:9000/hook
rules:
  - name: 未知标签
    trigger: daily
    when: {lacks: 不存在的标签}
    then: [{add: 活跃客户}]
  - name: 甲
    trigger: daily
    then: [{add: VIP客户}]
  - name: 乙
    trigger: daily
    then: [{add: 普通客户}]
  - name: 环一
    trigger: {tag: 活跃客户}
    then: [{remove: 沉默客户}]
  - name: 环二
    trigger: {tag: 沉默客户}
    then: [{add: 活跃客户}]
  - name: 坏动作
    trigger: message
    then: [{webhook: nowhere}, {notify: [boss]}]
""")
    text = "\n".join(found)
    assert "webhooks[0].url: webhook URLs must be https://" in text
    assert "webhooks[1].secret: secrets must not be written in the taxonomy file" in text
    assert "webhooks[2]" not in text  # plain http to 127.0.0.1 is allowed
    assert "rules[0].when.lacks: tag '不存在的标签' is not in the taxonomy" in text
    assert "tag rules form a cycle: " in text and "活跃客户" in text and "沉默客户" in text
    assert "add different tags of the exclusive dimension 'value'" in text and "'甲' adds VIP客户" in text
    assert "webhook 'nowhere' is not declared" in text
    assert "recipient 'boss' must be owner, managers or user:USER_ID" in text


def test_priorities_settle_an_exclusive_dimension_and_secrets_come_from_named_variables() -> None:
    taxonomy = load("""
webhooks:
  - name: tickets
    url_env: KEBIAO_WEBHOOK_TICKETS_URL
    secret_env: KEBIAO_WEBHOOK_TICKETS_SECRET
rules:
  - name: 甲
    trigger: daily
    priority: 2
    then: [{add: VIP客户}, {webhook: tickets}]
  - name: 乙
    trigger: daily
    priority: 1
    then: [{add: 普通客户}]
""")
    assert [r.priority for r in taxonomy.rules.rules] == [2, 1]
    assert problems("""
webhooks:
  - name: tickets
    url: https://t.example.com
    secret_env: MY_SECRET
""") == ["webhooks[0].secret_env: webhook secrets are read from variables named KEBIAO_WEBHOOK_…"]


def test_message_conditions_need_a_message_trigger() -> None:
    assert problems("""
rules:
  - name: 错
    trigger: daily
    when: {message_tag: 活跃客户}
    then: [{add: 活跃客户}]
""") == ["rules[0].when: 'message_tag' only makes sense with trigger: message"]
