"""Rules and webhooks of the taxonomy file (`rules:`, `webhooks:`): the model, parsing and validation.

A rule has a name, a trigger (daily, message, event of a kind, change of tags), a condition tree (all / any /
not over leaf tests) and actions (add, remove, suggest, notify, webhook). Everything here is pure: the file
loader hands the parsed `rules:` and `webhooks:` values in and gets the model or a list of problems back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tagging.normaliser import name_key

MAX_RULES = 500
MAX_DEPTH = 8
MAX_DAYS = 3650
MAX_TEXT = 200
SECRET_PREFIX = "KEBIAO_WEBHOOK_"
TRIGGERS = ("daily", "message", "event", "tag")
RECIPIENTS = ("owner", "managers")
FIELDS = ("name", "company", "owner", "region", "crm_id", "contract_end")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
_COMPARE = re.compile(r"\s*(>=|<=|==|!=|>|<)?\s*(-?\d+(?:\.\d+)?)\s*")
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,49}")
_ENV = re.compile(r"[A-Z][A-Z0-9_]{0,99}")
_SECRET_KEYS = ("secret", "token", "password", "key", "api_key", "signing_secret")


# ---------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class Compare:
    """A comparison against a number, written `>= 4` (a bare number means `>=`)."""

    op: str
    value: float

    def test(self, actual: float) -> bool:
        return _OPS[self.op](actual, self.value)

    def __str__(self) -> str:
        number = int(self.value) if self.value == int(self.value) else self.value
        return f"{self.op} {number}"


@dataclass(frozen=True, slots=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Any_:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition


@dataclass(frozen=True, slots=True)
class HasTag:
    """The customer holds `tag` (for at least `min_days` / at most `max_days`, when given)."""

    tag: str
    min_days: int | None = None
    max_days: int | None = None


@dataclass(frozen=True, slots=True)
class LacksTag:
    tag: str


@dataclass(frozen=True, slots=True)
class MessageTag:
    """The message that triggered the rule matched `tag` (message trigger only)."""

    tag: str


@dataclass(frozen=True, slots=True)
class Events:
    """Count (or sum of amounts) of customer events of `kind` within the last `days` days."""

    kind: str
    days: int
    count: Compare | None = None
    sum: Compare | None = None

    @property
    def window(self) -> tuple[str, int]:
        return self.kind, self.days


@dataclass(frozen=True, slots=True)
class Field:
    """A customer field or attribute: `in` a list, `equals`, a numeric comparison, a date within N days, or a
    date whose month is this/next month (birthdays)."""

    name: str
    in_: tuple[str, ...] = ()
    compare: Compare | None = None
    within_days: int | None = None
    month: str | None = None  # "this" | "next"


@dataclass(frozen=True, slots=True)
class SilentDays:
    """Days since the last conversation (or since the customer was created, if none)."""

    compare: Compare


@dataclass(frozen=True, slots=True)
class ChurnScore:
    compare: Compare


Condition = All | Any_ | Not | HasTag | LacksTag | MessageTag | Events | Field | SilentDays | ChurnScore


@dataclass(frozen=True, slots=True)
class AddTag:
    tag: str
    ttl_days: int | None = None
    to_contacts: bool = False


@dataclass(frozen=True, slots=True)
class RemoveTag:
    tag: str
    to_contacts: bool = False


@dataclass(frozen=True, slots=True)
class SuggestTag:
    tag: str


@dataclass(frozen=True, slots=True)
class Notify:
    """Recipients: `owner`, `managers` (of the customer's region) and named user ids."""

    owner: bool = False
    managers: bool = False
    users: tuple[str, ...] = ()
    title: str = ""


@dataclass(frozen=True, slots=True)
class CallWebhook:
    webhook: str


Action = AddTag | RemoveTag | SuggestTag | Notify | CallWebhook


@dataclass(frozen=True, slots=True)
class Trigger:
    """When a rule is evaluated: `daily`, on a `message`, on an `event` of some kinds, on a `tag` change."""

    kind: str
    event_kinds: tuple[str, ...] = ()  # event trigger: empty = any kind
    tags: tuple[str, ...] = ()  # tag trigger: the watched tags


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    trigger: Trigger
    condition: Condition
    actions: tuple[Action, ...]
    description: str = ""
    priority: int | None = None
    enabled: bool = True

    def added_tags(self) -> tuple[str, ...]:
        return tuple(a.tag for a in self.actions if isinstance(a, AddTag))

    def changed_tags(self) -> tuple[str, ...]:
        return tuple(a.tag for a in self.actions if isinstance(a, AddTag | RemoveTag))


@dataclass(frozen=True, slots=True)
class Webhook:
    """An endpoint rules may call; the URL may come from an environment variable (unset: not configured)."""

    name: str
    url: str | None = None
    url_env: str | None = None
    secret_env: str | None = None


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    webhooks: tuple[Webhook, ...] = ()

    def by_trigger(self, kind: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.enabled and r.trigger.kind == kind)

    def webhook(self, name: str) -> Webhook | None:
        return next((w for w in self.webhooks if w.name == name), None)

    def __bool__(self) -> bool:
        return bool(self.rules or self.webhooks)


def walk(condition: Condition) -> Iterator[Condition]:
    """Every node of a condition tree, depth first."""
    yield condition
    if isinstance(condition, All | Any_):
        for item in condition.items:
            yield from walk(item)
    elif isinstance(condition, Not):
        yield from walk(condition.item)


def event_windows(rules: Sequence[Rule]) -> tuple[tuple[str, int], ...]:
    """Every (kind, days) window the rules count or sum over, sorted."""
    return tuple(sorted({n.window for r in rules for n in walk(r.condition) if isinstance(n, Events)}))


def uses_churn(rules: Sequence[Rule]) -> bool:
    return any(isinstance(n, ChurnScore) for r in rules for n in walk(r.condition))


# ---------------------------------------------------------------- parsing


@dataclass
class RulesParser:
    """Parses the `rules:` and `webhooks:` values; `fail(path, reason)` collects problems, `tag_exists(name)`
    says whether a tag is in the taxonomy, `tag_dimension(name)` gives its dimension and whether exclusive."""

    fail: Callable[[str, str], None]
    tag_exists: Callable[[str], bool]
    tag_dimension: Callable[[str], tuple[str, bool] | None]
    problems: int = 0
    _webhooks: dict[str, Webhook] = field(default_factory=dict)

    def parse(self, rules: Any, webhooks: Any) -> RuleSet:
        hooks = self.webhooks(webhooks)
        self._webhooks = {w.name: w for w in hooks}
        parsed = self.rules(rules)
        self.check_cycles(parsed)
        self.check_exclusive(parsed)
        return RuleSet(parsed, hooks)

    # -- webhooks

    def webhooks(self, value: Any) -> tuple[Webhook, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail("webhooks", f"'webhooks' must be a list, got {_kind(value)}")
            return ()
        out: list[Webhook] = []
        names: set[str] = set()
        for i, item in enumerate(value):
            path = f"webhooks[{i}]"
            if not isinstance(item, Mapping):
                self.fail(path, f"a webhook must be a mapping, got {_kind(item)}")
                continue
            self._refuse_secrets(item, path)
            self._keys(item, ("name", "url", "url_env", "secret_env", "description"), path)
            name = item.get("name")
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                self.fail(f"{path}.name", "webhook name must be lower-case letters, digits, '-' or '_' (e.g. tickets)")
                continue
            if name in names:
                self.fail(f"{path}.name", f"webhook '{name}' is declared twice")
                continue
            names.add(name)
            url, url_env, secret_env = item.get("url"), item.get("url_env"), item.get("secret_env")
            if (url is None) == (url_env is None):
                self.fail(path, "give exactly one of 'url' or 'url_env' (the name of an environment variable)")
                continue
            if url is not None:
                reason = url_problem(url)
                if reason:
                    self.fail(f"{path}.url", reason)
                    continue
            for key, env in (("url_env", url_env), ("secret_env", secret_env)):
                if env is not None and (not isinstance(env, str) or not _ENV.fullmatch(env)):
                    self.fail(
                        f"{path}.{key}", f"'{key}' must name an environment variable (e.g. {SECRET_PREFIX}TICKETS)"
                    )
                    env = None
            if secret_env is not None and isinstance(secret_env, str) and not secret_env.startswith(SECRET_PREFIX):
                self.fail(f"{path}.secret_env", f"webhook secrets are read from variables named {SECRET_PREFIX}…")
                continue
            out.append(Webhook(name, url, url_env if isinstance(url_env, str) else None, secret_env))
        return tuple(out)

    def _refuse_secrets(self, item: Mapping[Any, Any], path: str) -> None:
        for key in item:
            if str(key).lower() in _SECRET_KEYS or str(key).lower().endswith(("_secret", "_token", "password")):
                if str(key) == "secret_env":
                    continue
                self.fail(
                    f"{path}.{key}",
                    "secrets must not be written in the taxonomy file (it is versioned and exported); put the "
                    f"secret in an environment variable named {SECRET_PREFIX}… and give its name as 'secret_env'",
                )

    # -- rules

    def rules(self, value: Any) -> tuple[Rule, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail("rules", f"'rules' must be a list, got {_kind(value)}")
            return ()
        if len(value) > MAX_RULES:
            self.fail("rules", f"{len(value)} rules; at most {MAX_RULES} allowed")
            return ()
        out: list[Rule] = []
        names: dict[str, int] = {}
        for i, item in enumerate(value):
            rule = self.rule(item, f"rules[{i}]")
            if rule is None:
                continue
            key = name_key(rule.name)
            if key in names:
                self.fail(f"rules[{i}].name", f"rule name '{rule.name}' is already used by rules[{names[key]}]")
                continue
            names[key] = i
            out.append(rule)
        return tuple(out)

    def rule(self, value: Any, path: str) -> Rule | None:
        if not isinstance(value, Mapping):
            self.fail(path, f"a rule must be a mapping, got {_kind(value)}")
            return None
        self._keys(value, ("name", "description", "trigger", "when", "then", "priority", "enabled"), path)
        for key in ("name", "trigger", "then"):
            if key not in value:
                self.fail(f"{path}.{key}", f"'{key}' is required")
        name = self._text(value.get("name"), f"{path}.name", "rule name") if "name" in value else None
        description = value.get("description") or ""
        if not isinstance(description, str):
            self.fail(f"{path}.description", "description must be a string")
            description = ""
        priority = value.get("priority")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            self.fail(f"{path}.priority", f"priority must be a whole number, got {_kind(priority)}")
            priority = None
        enabled = value.get("enabled", True)
        if not isinstance(enabled, bool):
            self.fail(f"{path}.enabled", "enabled must be true or false")
            enabled = True
        trigger = self.trigger(value.get("trigger"), f"{path}.trigger") if "trigger" in value else None
        when = value.get("when")
        condition: Condition | None = All(()) if when is None else self.condition(when, f"{path}.when", 0)
        actions = self.actions(value.get("then"), f"{path}.then") if "then" in value else ()
        if trigger is not None and trigger.kind != "message" and condition is not None:
            for node in walk(condition):
                if isinstance(node, MessageTag):
                    self.fail(f"{path}.when", "'message_tag' only makes sense with trigger: message")
                    break
        if name is None or trigger is None or condition is None or not actions:
            return None
        return Rule(name, trigger, condition, actions, description.strip(), priority, enabled)

    def trigger(self, value: Any, path: str) -> Trigger | None:
        if isinstance(value, str):
            if value in ("daily", "message", "event"):
                return Trigger(value)
            self.fail(path, f"unknown trigger {value!r}; use daily, message, event, {{event: KIND}} or {{tag: [TAG…]}}")
            return None
        if isinstance(value, Mapping) and len(value) == 1:
            kind, arg = next(iter(value.items()))
            names = arg if isinstance(arg, list) else [arg]
            if kind == "event" and all(isinstance(n, str) and n.strip() for n in names):
                return Trigger("event", event_kinds=tuple(n.strip() for n in names))
            if kind == "tag" and all(isinstance(n, str) and n.strip() for n in names) and names:
                tags = tuple(n.strip() for n in names)
                for tag in tags:
                    self._tag(tag, path)
                return Trigger("tag", tags=tags)
        self.fail(path, "trigger must be daily, message, event, {event: KIND or [KIND…]} or {tag: TAG or [TAG…]}")
        return None

    # -- conditions

    def condition(self, value: Any, path: str, depth: int) -> Condition | None:
        if depth > MAX_DEPTH:
            self.fail(path, f"conditions nest at most {MAX_DEPTH} levels")
            return None
        if not isinstance(value, Mapping) or len(value) != 1:
            self.fail(path, f"a condition is a mapping with one key ({', '.join(sorted(_LEAVES))}), got {_kind(value)}")
            return None
        key, arg = next(iter(value.items()))
        where = f"{path}.{key}"
        if key in ("all", "any"):
            if not isinstance(arg, list) or not arg:
                self.fail(where, f"'{key}' needs a non-empty list of conditions")
                return None
            items = [self.condition(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(arg)]
            if any(i is None for i in items):
                return None
            kept = tuple(i for i in items if i is not None)
            return All(kept) if key == "all" else Any_(kept)
        if key == "not":
            inner = self.condition(arg, where, depth + 1)
            return None if inner is None else Not(inner)
        leaf = _LEAVES.get(str(key))
        if leaf is None:
            self.fail(where, f"unknown condition {key!r}; use all, any, not or one of: {', '.join(sorted(_LEAVES))}")
            return None
        return leaf(self, arg, where)

    def _has(self, arg: Any, path: str) -> Condition | None:
        if isinstance(arg, str):
            return HasTag(arg.strip()) if self._tag(arg, path) else None
        if isinstance(arg, Mapping):
            self._keys(arg, ("tag", "min_days", "max_days"), path)
            tag = arg.get("tag")
            if not isinstance(tag, str) or not self._tag(tag, f"{path}.tag"):
                if not isinstance(tag, str):
                    self.fail(f"{path}.tag", "'tag' (a tag name) is required")
                return None
            low = self._days(arg.get("min_days"), f"{path}.min_days", optional=True)
            high = self._days(arg.get("max_days"), f"{path}.max_days", optional=True)
            return HasTag(tag.strip(), low, high)
        self.fail(path, "'has' takes a tag name or {tag: NAME, min_days: N, max_days: N}")
        return None

    def _lacks(self, arg: Any, path: str) -> Condition | None:
        if isinstance(arg, str) and self._tag(arg, path):
            return LacksTag(arg.strip())
        if not isinstance(arg, str):
            self.fail(path, "'lacks' takes a tag name")
        return None

    def _message_tag(self, arg: Any, path: str) -> Condition | None:
        if isinstance(arg, str) and self._tag(arg, path):
            return MessageTag(arg.strip())
        if not isinstance(arg, str):
            self.fail(path, "'message_tag' takes a tag name")
        return None

    def _events(self, arg: Any, path: str) -> Condition | None:
        if not isinstance(arg, Mapping):
            self.fail(path, "'events' takes {kind: KIND, days: N, count: '>= 4'} or {…, sum: '>= 5000'}")
            return None
        self._keys(arg, ("kind", "days", "count", "sum"), path)
        kind = arg.get("kind")
        if not isinstance(kind, str) or not kind.strip():
            self.fail(f"{path}.kind", "'kind' (an event kind such as purchase) is required")
            return None
        days = self._days(arg.get("days"), f"{path}.days")
        count = self._compare(arg["count"], f"{path}.count") if "count" in arg else None
        total = self._compare(arg["sum"], f"{path}.sum") if "sum" in arg else None
        if "count" not in arg and "sum" not in arg:
            self.fail(path, "give 'count' or 'sum' (e.g. count: '>= 4')")
            return None
        if days is None or ("count" in arg and count is None) or ("sum" in arg and total is None):
            return None
        return Events(kind.strip(), days, count, total)

    def _field(self, arg: Any, path: str) -> Condition | None:
        if not isinstance(arg, Mapping):
            self.fail(
                path,
                "'field' takes {name: FIELD, in: [...]} / {name, equals} / {name, value: '>= N'} / "
                "{name, within_days: N} / {name, month: this|next}",
            )
            return None
        self._keys(arg, ("name", "in", "equals", "value", "within_days", "month"), path)
        name = arg.get("name")
        if not isinstance(name, str) or not name.strip():
            self.fail(f"{path}.name", "'name' (a customer field or attribute column) is required")
            return None
        tests = [k for k in ("in", "equals", "value", "within_days", "month") if k in arg]
        if len(tests) != 1:
            self.fail(path, "give exactly one of: in, equals, value, within_days, month")
            return None
        test = tests[0]
        raw = arg[test]
        if test in ("in", "equals"):
            items = raw if isinstance(raw, list) else [raw]
            if not items or not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in items):
                self.fail(f"{path}.{test}", f"'{test}' takes text values")
                return None
            return Field(name.strip(), in_=tuple(str(v).strip() for v in items))
        if test == "value":
            compare = self._compare(raw, f"{path}.value")
            return None if compare is None else Field(name.strip(), compare=compare)
        if test == "within_days":
            days = self._days(raw, f"{path}.within_days")
            return None if days is None else Field(name.strip(), within_days=days)
        if raw not in ("this", "next"):
            self.fail(f"{path}.month", f"month must be 'this' or 'next', got {_kind(raw)}")
            return None
        return Field(name.strip(), month=str(raw))

    def _silent(self, arg: Any, path: str) -> Condition | None:
        compare = self._compare(arg, path)
        return None if compare is None else SilentDays(compare)

    def _churn(self, arg: Any, path: str) -> Condition | None:
        compare = self._compare(arg, path)
        return None if compare is None else ChurnScore(compare)

    # -- actions

    def actions(self, value: Any, path: str) -> tuple[Action, ...]:
        if not isinstance(value, list) or not value:
            self.fail(path, "'then' needs a non-empty list of actions (add, remove, suggest, notify, webhook)")
            return ()
        out: list[Action] = []
        for i, item in enumerate(value):
            action = self.action(item, f"{path}[{i}]")
            if action is not None:
                out.append(action)
        return tuple(out) if len(out) == len(value) else ()

    def action(self, value: Any, path: str) -> Action | None:
        if not isinstance(value, Mapping):
            self.fail(path, f"an action must be a mapping, got {_kind(value)}")
            return None
        verbs = [k for k in ("add", "remove", "suggest", "notify", "webhook") if k in value]
        if len(verbs) != 1:
            self.fail(path, "an action has exactly one of: add, remove, suggest, notify, webhook")
            return None
        verb = verbs[0]
        arg = value[verb]
        allowed = {
            "add": ("add", "ttl_days", "to"),
            "remove": ("remove", "to"),
            "suggest": ("suggest",),
            "notify": ("notify", "title"),
            "webhook": ("webhook",),
        }[verb]
        self._keys(value, allowed, path)
        where = f"{path}.{verb}"
        to_contacts = False
        if "to" in value:
            if value["to"] not in ("customer", "contacts"):
                self.fail(f"{path}.to", "'to' must be customer or contacts")
                return None
            to_contacts = value["to"] == "contacts"
        if verb in ("add", "remove", "suggest"):
            if not isinstance(arg, str) or not self._tag(arg, where):
                if not isinstance(arg, str):
                    self.fail(where, f"'{verb}' takes a tag name")
                return None
            if verb == "add":
                ttl = self._days(value.get("ttl_days"), f"{path}.ttl_days", optional=True)
                return AddTag(arg.strip(), ttl, to_contacts)
            return RemoveTag(arg.strip(), to_contacts) if verb == "remove" else SuggestTag(arg.strip())
        if verb == "webhook":
            if not isinstance(arg, str) or arg not in self._webhooks:
                known = ", ".join(sorted(self._webhooks)) or "none declared"
                self.fail(where, f"webhook {_kind(arg)} is not declared under 'webhooks' (declared: {known})")
                return None
            return CallWebhook(arg)
        items = arg if isinstance(arg, list) else [arg]
        owner = managers = False
        users: list[str] = []
        for j, item in enumerate(items):
            if item == "owner":
                owner = True
            elif item == "managers":
                managers = True
            elif isinstance(item, str) and item.startswith("user:") and item[5:].strip():
                users.append(item[5:].strip())
            else:
                self.fail(f"{where}[{j}]", f"recipient {_kind(item)} must be owner, managers or user:USER_ID")
                return None
        title = value.get("title", "")
        if not isinstance(title, str) or len(title) > MAX_TEXT:
            self.fail(f"{path}.title", f"title must be text of at most {MAX_TEXT} characters")
            return None
        if not items:
            self.fail(where, "notify needs at least one recipient")
            return None
        return Notify(owner, managers, tuple(users), title.strip())

    # -- cross-rule checks

    def check_cycles(self, rules: Sequence[Rule]) -> None:
        """Tag-triggered rules that change tags watched by tag-triggered rules must not loop."""
        edges: dict[str, set[str]] = {}
        for rule in rules:
            if rule.trigger.kind != "tag" or not rule.enabled:
                continue
            for watched in rule.trigger.tags:
                edges.setdefault(name_key(watched), set()).update(name_key(t) for t in rule.changed_tags())
        state: dict[str, int] = {}
        reported: set[frozenset[str]] = set()

        def visit(node: str, trail: list[str]) -> None:
            state[node] = 1
            for nxt in sorted(edges.get(node, ())):
                if state.get(nxt) == 1:
                    loop = [*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt]
                    if frozenset(loop) not in reported:
                        reported.add(frozenset(loop))
                        self.fail("rules", "tag rules form a cycle: " + " → ".join(loop) + "; break the chain")
                elif state.get(nxt) is None:
                    visit(nxt, [*trail, nxt])
            state[node] = 2

        for start in sorted(edges):
            if state.get(start) is None:
                visit(start, [start])

    def check_exclusive(self, rules: Sequence[Rule]) -> None:
        """Two rules adding tags of one exclusive dimension on the same trigger need priorities."""
        seen: dict[tuple[str, str], list[tuple[Rule, str]]] = {}
        for rule in rules:
            if not rule.enabled:
                continue
            trigger = f"{rule.trigger.kind}:{','.join(rule.trigger.event_kinds or rule.trigger.tags)}"
            for tag in rule.added_tags():
                found = self.tag_dimension(tag)
                if found is None or not found[1]:
                    continue
                seen.setdefault((trigger, found[0]), []).append((rule, tag))
        for (trigger, dimension), entries in seen.items():
            names = {r.name for r, _ in entries}
            tags = {name_key(t) for _, t in entries}
            if len(names) < 2 or len(tags) < 2:
                continue
            if any(r.priority is None for r, _ in entries):
                listed = ", ".join(f"'{r.name}' adds {t}" for r, t in entries)
                self.fail(
                    "rules",
                    f"rules on the same trigger ({trigger.rstrip(':')}) add different tags of the exclusive "
                    f"dimension '{dimension}' ({listed}); give each a 'priority' (higher wins)",
                )

    # -- small helpers

    def _tag(self, name: str, path: str) -> bool:
        if not name.strip():
            self.fail(path, "tag name must not be empty")
            return False
        if not self.tag_exists(name.strip()):
            self.fail(path, f"tag '{name.strip()}' is not in the taxonomy; add it to a dimension or fix the name")
            return False
        return True

    def _text(self, value: Any, path: str, what: str) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.fail(path, f"{what} must be non-empty text")
            return None
        if len(value) > MAX_TEXT or any(ch in value for ch in "\r\n\t"):
            self.fail(path, f"{what} must be one line of at most {MAX_TEXT} characters")
            return None
        return value.strip()

    def _days(self, value: Any, path: str, optional: bool = False) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DAYS:
            self.fail(path, f"must be a whole number of days from 0 to {MAX_DAYS}, got {_kind(value)}")
            return None
        return value

    def _compare(self, value: Any, path: str) -> Compare | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return Compare(">=", float(value))
        if isinstance(value, str):
            match = _COMPARE.fullmatch(value)
            if match:
                return Compare(match.group(1) or ">=", float(match.group(2)))
        self.fail(path, f"expected a comparison such as '>= 4' or '< 0.5', got {_kind(value)}")
        return None

    def _keys(self, data: Mapping[Any, Any], allowed: tuple[str, ...], path: str) -> None:
        for key in data:
            if key not in allowed:
                self.fail(f"{path}.{key}", f"unknown key {key!r}; allowed keys: {', '.join(allowed)}")


_LEAVES: dict[str, Callable[[RulesParser, Any, str], Condition | None]] = {
    "has": RulesParser._has,
    "lacks": RulesParser._lacks,
    "message_tag": RulesParser._message_tag,
    "events": RulesParser._events,
    "field": RulesParser._field,
    "silent_days": RulesParser._silent,
    "churn_score": RulesParser._churn,
}


def url_problem(url: Any) -> str | None:
    """Why a webhook URL is refused (https only; http only to 127.0.0.1), or None."""
    if not isinstance(url, str) or not url.strip():
        return "url must be text"
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "url is not a valid URL"
    if parts.username or parts.password:
        return "url must not carry a user name or password; use secret_env for the signing secret"
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname == "127.0.0.1":
        return None
    return "webhook URLs must be https:// (plain http:// only to 127.0.0.1, for local receivers)"


# ---------------------------------------------------------------- back to file data


def ruleset_to_data(ruleset: RuleSet) -> dict[str, Any]:
    """The `rules:` and `webhooks:` sections as plain data (empty sections left out)."""
    out: dict[str, Any] = {}
    if ruleset.webhooks:
        out["webhooks"] = [
            {
                k: v
                for k, v in (("name", w.name), ("url", w.url), ("url_env", w.url_env), ("secret_env", w.secret_env))
                if v is not None
            }
            for w in ruleset.webhooks
        ]
    if ruleset.rules:
        out["rules"] = [_rule_data(r) for r in ruleset.rules]
    return out


def _rule_data(rule: Rule) -> dict[str, Any]:
    data: dict[str, Any] = {"name": rule.name}
    if rule.description:
        data["description"] = rule.description
    t = rule.trigger
    if t.kind == "event" and t.event_kinds:
        data["trigger"] = {"event": list(t.event_kinds)}
    elif t.kind == "tag":
        data["trigger"] = {"tag": list(t.tags)}
    else:
        data["trigger"] = t.kind
    if rule.priority is not None:
        data["priority"] = rule.priority
    if not rule.enabled:
        data["enabled"] = False
    if not (isinstance(rule.condition, All) and not rule.condition.items):
        data["when"] = condition_data(rule.condition)
    data["then"] = [_action_data(a) for a in rule.actions]
    return data


def condition_data(node: Condition) -> dict[str, Any]:
    """A condition as it is written in the file."""
    if isinstance(node, All):
        return {"all": [condition_data(i) for i in node.items]}
    if isinstance(node, Any_):
        return {"any": [condition_data(i) for i in node.items]}
    if isinstance(node, Not):
        return {"not": condition_data(node.item)}
    if isinstance(node, HasTag):
        if node.min_days is None and node.max_days is None:
            return {"has": node.tag}
        has: dict[str, Any] = {"tag": node.tag}
        if node.min_days is not None:
            has["min_days"] = node.min_days
        if node.max_days is not None:
            has["max_days"] = node.max_days
        return {"has": has}
    if isinstance(node, LacksTag):
        return {"lacks": node.tag}
    if isinstance(node, MessageTag):
        return {"message_tag": node.tag}
    if isinstance(node, Events):
        ev: dict[str, Any] = {"kind": node.kind, "days": node.days}
        if node.count is not None:
            ev["count"] = str(node.count)
        if node.sum is not None:
            ev["sum"] = str(node.sum)
        return {"events": ev}
    if isinstance(node, Field):
        f: dict[str, Any] = {"name": node.name}
        if node.in_:
            f["in"] = list(node.in_)
        elif node.compare is not None:
            f["value"] = str(node.compare)
        elif node.within_days is not None:
            f["within_days"] = node.within_days
        else:
            f["month"] = node.month
        return {"field": f}
    if isinstance(node, SilentDays):
        return {"silent_days": str(node.compare)}
    return {"churn_score": str(node.compare)}


def _action_data(action: Action) -> dict[str, Any]:
    if isinstance(action, AddTag):
        out: dict[str, Any] = {"add": action.tag}
        if action.ttl_days is not None:
            out["ttl_days"] = action.ttl_days
        if action.to_contacts:
            out["to"] = "contacts"
        return out
    if isinstance(action, RemoveTag):
        return {"remove": action.tag, **({"to": "contacts"} if action.to_contacts else {})}
    if isinstance(action, SuggestTag):
        return {"suggest": action.tag}
    if isinstance(action, CallWebhook):
        return {"webhook": action.webhook}
    who = [
        *(["owner"] if action.owner else []),
        *(["managers"] if action.managers else []),
        *(f"user:{u}" for u in action.users),
    ]
    return {"notify": who, **({"title": action.title} if action.title else {})}


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return repr(value[:60])
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "a mapping",
        type(None): "nothing (null)",
    }.get(type(value), type(value).__name__)
