"""Rule drafts: the console's rule form round-trips every built-in rule and reports problems by field."""

from __future__ import annotations

import dataclasses

import pytest

from console.i18n import translator
from console.rule_text import action_text, condition_text, trigger_text
from core.taxonomy.rule_drafts import RuleForm, edit_rule, new_rule_form, remove_rule, rule_form, trial
from tagging.builtin import load_builtin
from tagging.loader import taxonomy_to_data
from tagging.taxonomy import Taxonomy


@pytest.fixture(scope="module")
def builtin() -> Taxonomy:
    return load_builtin(None)


def test_every_builtin_rule_round_trips_through_the_form(builtin: Taxonomy) -> None:
    for rule in builtin.rules.rules:
        form = rule_form(builtin, rule.name)
        assert form is not None
        result = edit_rule(builtin, rule.name, form)
        assert result.taxonomy is not None, (rule.name, result.problems)
        assert taxonomy_to_data(result.taxonomy) == taxonomy_to_data(builtin)


def test_problems_go_to_their_fields(builtin: Taxonomy) -> None:
    form = rule_form(builtin, "服务到期未续费")
    assert form is not None
    cases = {
        "when": dataclasses.replace(form, when="all:\n  - lacks: 没有这个标签\n"),
        "then": dataclasses.replace(form, then="- webhook: nowhere\n"),
        "trigger": dataclasses.replace(form, trigger="weekly"),
        "priority": dataclasses.replace(form, priority="high"),
        "name": dataclasses.replace(form, name="购买后活跃"),  # another rule's name
    }
    for field, changed in cases.items():
        result = edit_rule(builtin, "服务到期未续费", changed)
        assert result.taxonomy is None and field in result.problems, (field, result.problems)
    syntax = edit_rule(builtin, None, dataclasses.replace(form, name="新规则", when="all: ["))
    assert "YAML syntax error" in syntax.problems["when"][0]
    assert (
        "tag trigger"
        in edit_rule(builtin, None, RuleForm(name="x", trigger="tag", then="- add: 活跃客户")).problems["trigger"][0]
    )


def test_new_rule_is_off_and_a_single_action_needs_no_list(builtin: Taxonomy) -> None:
    form = dataclasses.replace(new_rule_form(), name="新规则", then="add: 活跃客户")
    assert not form.enabled
    result = edit_rule(builtin, None, form)
    assert result.taxonomy is not None
    added = result.taxonomy.rules.rules[-1]
    assert added.name == "新规则" and not added.enabled
    tried = trial(result.taxonomy, "新规则")
    assert [r.name for r in tried.rules.rules] == ["新规则"] and tried.rules.rules[0].enabled
    assert tried.rules.webhooks == builtin.rules.webhooks


def test_remove_rule(builtin: Taxonomy) -> None:
    result = remove_rule(builtin, "购买后活跃")
    assert result.taxonomy is not None and "购买后活跃" not in {r.name for r in result.taxonomy.rules.rules}
    assert remove_rule(builtin, "没有").problems


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_builtin_rule_reads_in_words(builtin: Taxonomy, lang: str) -> None:
    t = translator(lang)
    for rule in builtin.rules.rules:
        words = [trigger_text(rule, t), condition_text(rule.condition, t), *(action_text(a, t) for a in rule.actions)]
        assert all(w and not w.startswith(("rt_", "rc_", "ra_")) and "{" not in w for w in words), words
    described = condition_text(next(r for r in builtin.rules.rules if r.name == "服务到期未续费").condition, t)
    assert described == (
        "contract_end 在 30 天内 且 没有标签 续费意向"
        if lang == "zh"
        else "contract_end within 30 days and lacks 续费意向"
    )
