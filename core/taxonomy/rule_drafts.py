"""Editing one rule of a taxonomy as a draft: form values in, a checked taxonomy or field problems out.

Pure: the draft is the taxonomy's file form (design 3.4) with one entry of `rules:` replaced, added or removed,
checked by the same loader that checks files, so the console shows exactly the problems an import would. The
condition (`when:`) and the actions (`then:`) are typed as YAML, as they are written in the file.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.taxonomy.drafts import GENERAL, SOURCE, DraftResult, check_document
from tagging.loader import Problem, TaxonomyError, dump_fragment, load_taxonomy_text, read_fragment, taxonomy_to_data
from tagging.normaliser import name_key
from tagging.rules import RuleSet, ruleset_to_data
from tagging.taxonomy import Taxonomy

TRIGGER_KINDS = ("daily", "message", "event", "tag")
_SPLIT = re.compile(r"[,，、;；\n\r]+")
_PRIORITY = re.compile(r"-?\d{1,9}")


@dataclass(frozen=True, slots=True)
class RuleForm:
    """A rule as typed into the console's form (every value a string, as the browser sends it)."""

    name: str = ""
    description: str = ""
    trigger: str = "daily"
    trigger_on: str = ""  # event kinds (event trigger) or tag names (tag trigger), comma separated
    priority: str = ""
    enabled: bool = True
    when: str = ""  # YAML of the condition; empty = always
    then: str = ""  # YAML list of actions

    @classmethod
    def from_mapping(cls, data: Mapping[str, str]) -> RuleForm:
        """Read the form fields; absent fields are empty, the checkbox is on when present."""
        return cls(
            name=data.get("name", "").strip(),
            description=data.get("description", "").strip(),
            trigger=data.get("trigger", "").strip(),
            trigger_on=data.get("trigger_on", "").strip(),
            priority=data.get("priority", "").strip(),
            enabled=data.get("enabled", "") not in ("", "0", "off", "false"),
            when=data.get("when", ""),
            then=data.get("then", ""),
        )


def rule_form(taxonomy: Taxonomy, name: str) -> RuleForm | None:
    """The form filled with an existing rule; None when the taxonomy has no rule of that name."""
    data = _rule_data(taxonomy, name)
    if data is None:
        return None
    trigger = data["trigger"]
    kind, on = (trigger, []) if isinstance(trigger, str) else next(iter(trigger.items()))
    return RuleForm(
        name=data["name"],
        description=data.get("description", ""),
        trigger=kind,
        trigger_on="、".join(on),
        priority="" if data.get("priority") is None else str(data["priority"]),
        enabled=data.get("enabled", True),
        when=dump_fragment(data["when"]) if "when" in data else "",
        then=dump_fragment(data["then"]),
    )


def new_rule_form() -> RuleForm:
    """A new rule's form: daily, switched off until tested, with an example action to edit."""
    return RuleForm(enabled=False, then="- add: \n")


def _rule_data(taxonomy: Taxonomy, name: str) -> dict[str, Any] | None:
    key = name_key(name)
    rules: list[dict[str, Any]] = ruleset_to_data(taxonomy.rules).get("rules", [])
    return next((r for r in rules if name_key(r["name"]) == key), None)


def _words(text: str) -> list[str]:
    return [w.strip() for w in _SPLIT.split(text) if w.strip()]


def _trigger(form: RuleForm) -> tuple[Any, str | None]:
    """The file's `trigger:` value for the form, or why it cannot be written."""
    on = _words(form.trigger_on)
    if form.trigger in ("daily", "message"):
        return form.trigger, None
    if form.trigger == "event":
        return ({"event": on} if on else "event"), None
    if form.trigger == "tag":
        return ({"tag": on}, None) if on else (None, "a tag trigger needs the tags it watches")
    return None, f"unknown trigger {form.trigger!r}; choose {', '.join(TRIGGER_KINDS)}"


def _fragment(text: str, what: str) -> tuple[Any, str | None]:
    try:
        return read_fragment(text, what), None
    except TaxonomyError as exc:
        return None, "; ".join(p.reason for p in exc.problems)


def form_data(form: RuleForm) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The rule as file data, and the problems found before the loader sees it (trigger, YAML, priority)."""
    problems: dict[str, list[str]] = {}
    data: dict[str, Any] = {"name": form.name}
    if form.description:
        data["description"] = form.description
    trigger, reason = _trigger(form)
    if reason:
        problems.setdefault("trigger", []).append(reason)
    data["trigger"] = trigger
    if form.priority:
        if _PRIORITY.fullmatch(form.priority):
            data["priority"] = int(form.priority)
        else:
            problems.setdefault("priority", []).append(f"priority must be a whole number, got {form.priority!r}")
    if not form.enabled:
        data["enabled"] = False
    if form.when.strip():
        when, reason = _fragment(form.when, "when")
        if reason:
            problems.setdefault("when", []).append(reason)
        data["when"] = when
    then, reason = _fragment(form.then, "then") if form.then.strip() else (None, None)
    if reason:
        problems.setdefault("then", []).append(reason)
    data["then"] = [then] if isinstance(then, dict) else then  # one action may be written without the list
    return data, problems


def edit_rule(taxonomy: Taxonomy, original: str | None, form: RuleForm) -> DraftResult:
    """Replace the rule named `original` — or add a new one when None — with the form's rule, then check."""
    document = taxonomy_to_data(taxonomy)
    rules: list[dict[str, Any]] = document.setdefault("rules", [])
    index = len(rules)
    if original is not None:
        found = next((i for i, r in enumerate(rules) if name_key(r["name"]) == name_key(original)), None)
        if found is None:
            return DraftResult(document, None, {GENERAL: (f"rule '{original}' is no longer in the taxonomy",)})
        index = found
        rules.pop(index)
    data, problems = form_data(form)
    if not form.name:
        problems.setdefault("name", []).append("a rule needs a name")
    elif any(name_key(r["name"]) == name_key(form.name) for r in rules):
        problems.setdefault("name", []).append(f"rule name '{form.name}' is already used by another rule")
    if problems:
        return DraftResult(document, None, {k: tuple(v) for k, v in problems.items()})
    rules.insert(index, data)
    try:
        checked = load_taxonomy_text(json.dumps(document, ensure_ascii=False), source=SOURCE, fmt="json")
    except TaxonomyError as exc:
        return DraftResult(document, None, _problems_for(exc.problems, f"rules[{index}]"))
    return DraftResult(document, checked)


def remove_rule(taxonomy: Taxonomy, name: str) -> DraftResult:
    """The taxonomy without the rule named `name`, checked."""
    document = taxonomy_to_data(taxonomy)
    rules: list[dict[str, Any]] = document.get("rules", [])
    kept = [r for r in rules if name_key(r["name"]) != name_key(name)]
    if len(kept) == len(rules):
        return DraftResult(document, None, {GENERAL: (f"rule '{name}' is not in the taxonomy",)})
    if kept:
        document["rules"] = kept
    else:
        document.pop("rules")
    return check_document(document)


def _problems_for(problems: tuple[Problem, ...], focus: str) -> dict[str, tuple[str, ...]]:
    """Loader problems by form field: `rules[3].when.all[0].has` → when; others → GENERAL with their path."""
    out: dict[str, list[str]] = {}
    for p in problems:
        name = GENERAL
        if p.path.startswith(focus + "."):
            name = re.split(r"[.\[]", p.path[len(focus) + 1 :])[0]
        reason = p.reason if name != GENERAL else (f"{p.path}: {p.reason}" if p.path else p.reason)
        out.setdefault(name, []).append(reason)
    return {k: tuple(v) for k, v in out.items()}


def trial(draft: Taxonomy, name: str) -> Taxonomy:
    """The draft with only the named rule, switched on: what testing a rule before switching it on runs."""
    key = name_key(name)
    chosen = tuple(dataclasses.replace(r, enabled=True) for r in draft.rules.rules if name_key(r.name) == key)
    return dataclasses.replace(draft, rules=RuleSet(chosen, draft.rules.webhooks))
