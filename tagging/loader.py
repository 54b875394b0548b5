"""Taxonomy files (YAML or JSON, design.md 3.4): parse, validate every rule, dump and merge."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml

from tagging.formula import describe_start, formula_start
from tagging.normaliser import name_key, normalise
from tagging.pii import describe, find_pii, mask
from tagging.rules import RuleSet, RulesParser, ruleset_to_data
from tagging.taxonomy import MAX_DEPTH, Dimension, SyncMode, TagDef, Taxonomy, Visibility

MAX_BYTES = 2 * 1024 * 1024  # a large real taxonomy is ~0.5 MB; beyond this the pure-Python parser gets slow
MAX_NAME = 50
MAX_KEYWORD = 50
MAX_DESCRIPTION = 500
MAX_TTL_DAYS = 3650
MAX_STATE = 30  # WeCom limits a 渠道活码 state to 30 characters

Format = Literal["yaml", "json"]

_TOP_KEYS = ("version", "dimensions", "channels", "rules", "webhooks")
_DIMENSION_KEYS = ("key", "name", "exclusive", "visibility", "tags", "sync", "crm_fields")
_TAG_KEYS = ("name", "color", "description", "keywords", "exclude", "ttl_days", "auto_apply", "children")
_KEY = re.compile(r"[a-z][a-z0-9_]*")
_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_EXTENSIONS: dict[str, Format] = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule: which file, where inside it (`dimensions[0].tags[2].name`), and why.

    `where` is the path as people read it, naming each dimension's key and each tag's name:
    `dimensions[5](risk).tags[0](高危流失).keywords[2]`.
    """

    file: str
    path: str
    reason: str
    where: str = ""

    def __str__(self) -> str:
        where = self.where or self.path
        return f"{self.file}:{where}: {self.reason}" if where else f"{self.file}: {self.reason}"


class TaxonomyError(ValueError):
    """A taxonomy was refused; `problems` lists every broken rule."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        count = len(self.problems)
        header = f"taxonomy refused ({count} problem{'s' if count != 1 else ''}):"
        super().__init__("\n".join([header, *(f"  {p}" for p in self.problems)]))


# ---------------------------------------------------------------- public API


def load_taxonomy_text(text: str, *, source: str = "<text>", fmt: str | None = None) -> Taxonomy:
    """Parse and validate a taxonomy held in `text`; `fmt` is "yaml", "json" or None (guess from content)."""
    if fmt not in (None, "yaml", "json"):
        raise TaxonomyError([Problem(source, "", f"unknown format {fmt!r}; use 'yaml' or 'json'")])
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise TaxonomyError([Problem(source, "", f"file is larger than {MAX_BYTES // 1024 // 1024} MB")])
    text = text.removeprefix("\ufeff")
    if fmt is None:
        fmt = "json" if text.lstrip()[:1] in ("{", "[") else "yaml"
    data = _parse_json(text, source) if fmt == "json" else _parse_yaml(text, source)
    return _build(data, source)


def load_taxonomy_file(path: str | Path) -> Taxonomy:
    """Load a taxonomy file; the format follows the extension (.yaml, .yml or .json)."""
    path = Path(path)
    source = str(path)
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise TaxonomyError([Problem(source, "", "unknown file extension; use .yaml, .yml or .json")])
    try:
        if path.stat().st_size > MAX_BYTES:
            raise TaxonomyError([Problem(source, "", f"file is larger than {MAX_BYTES // 1024 // 1024} MB")])
        raw = path.read_bytes()
    except OSError as exc:
        raise TaxonomyError([Problem(source, "", f"cannot read the file: {exc.strerror or exc}")]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (byte {exc.start}); save the file as UTF-8"
        raise TaxonomyError([Problem(source, "", reason)]) from exc
    return load_taxonomy_text(text, source=source, fmt=fmt)


def dump_taxonomy(taxonomy: Taxonomy, fmt: str = "yaml") -> str:
    """Serialise a taxonomy in the file format of design.md 3.4; loading the result gives it back."""
    data = taxonomy_to_data(taxonomy)
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.dump(data, Dumper=_FlowListDumper, allow_unicode=True, sort_keys=False, width=110)
    raise ValueError(f"unknown format {fmt!r}; use 'yaml' or 'json'")


def merge_taxonomies(base: Taxonomy, extra: Taxonomy, *, source: str = "<merge>") -> Taxonomy:
    """`extra` over `base`: new dimensions appended, tags joined into dimensions of the same key.

    A tag of `extra` that names a base tag at the same place and carries only `children` adds those
    children under the base tag (e.g. sub-industries under 基础属性/行业); any other repeat is a conflict.
    """
    problems: list[Problem] = []
    data = taxonomy_to_data(base)
    dims: list[dict[str, Any]] = data["dimensions"]
    by_key = {d["key"]: d for d in dims}
    for i, dim in enumerate(taxonomy_to_data(extra)["dimensions"]):
        existing = by_key.get(dim["key"])
        if existing is None:
            dims.append(dim)
            continue
        for attr in ("name", "exclusive", "visibility"):
            if existing[attr] != dim[attr]:
                reason = (
                    f"dimension '{dim['key']}' has {attr} {dim[attr]!r} here but {existing[attr]!r} "
                    f"in the base taxonomy; use the same {attr} or another key"
                )
                problems.append(Problem(source, f"dimensions[{i}].{attr}", reason))
        _merge_tags(existing["tags"], dim["tags"], f"dimensions[{i}].tags", source, problems)
    channels: dict[str, str] = dict(base.channels)
    for state, tag in extra.channels.items():
        if channels.get(state, tag) != tag:
            reason = f"state {state!r} maps to '{tag}' here but to '{channels[state]}' in the base taxonomy"
            problems.append(Problem(source, f"channels.{state}", reason))
        channels[state] = tag
    if channels:
        data["channels"] = channels
    merge_rules_data(data, ruleset_to_data(extra.rules))
    if problems:
        raise TaxonomyError(problems)
    return _build(data, source)


def _merge_tags(
    base: list[dict[str, Any]], extra: list[dict[str, Any]], path: str, source: str, problems: list[Problem]
) -> None:
    """Append `extra` tags to `base` in place; same-named pure references merge their children."""
    by_name = {name_key(t["name"]): t for t in base}
    for i, tag in enumerate(extra):
        existing = by_name.get(name_key(tag["name"]))
        if existing is None:
            base.append(tag)
            continue
        if set(tag) - {"name", "children"}:
            reason = (
                f"tag '{tag['name']}' is already defined in the base taxonomy; to add sub-tags under it "
                "give only its name and children, otherwise rename it"
            )
            problems.append(Problem(source, f"{path}[{i}].name", reason))
            continue
        children = existing.setdefault("children", [])
        _merge_tags(children, tag.get("children", []), f"{path}[{i}].children", source, problems)


def taxonomy_to_data(taxonomy: Taxonomy) -> dict[str, Any]:
    """Plain dict/list form of a taxonomy (the file format), defaults left out."""
    data: dict[str, Any] = {"version": taxonomy.version, "dimensions": []}
    for dim in taxonomy.dimensions:
        data["dimensions"].append(
            {
                "key": dim.key,
                "name": dim.name,
                "exclusive": dim.exclusive,
                "visibility": dim.visibility.value,
                "tags": [_tag_to_data(t) for t in dim.tags],
                **_sync_to_data(dim),
            }
        )
    if taxonomy.channels:
        data["channels"] = dict(taxonomy.channels)
    data.update(ruleset_to_data(taxonomy.rules))
    return data


def _sync_to_data(dim: Dimension) -> dict[str, Any]:
    """A dimension's `sync` and `crm_fields` keys, left out when they are the defaults."""
    out: dict[str, Any] = {}
    if dim.sync is not SyncMode.NONE:
        out["sync"] = dim.sync.value
    if dim.crm_fields:
        out["crm_fields"] = {f: dict(v) for f, v in dim.crm_fields.items()}
    return out


def _tag_to_data(tag: TagDef) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tag.name}
    if tag.color is not None:
        out["color"] = tag.color
    if tag.description is not None:
        out["description"] = tag.description
    if tag.keywords:
        out["keywords"] = list(tag.keywords)
    if tag.exclude:
        out["exclude"] = list(tag.exclude)
    if tag.ttl_days is not None:
        out["ttl_days"] = tag.ttl_days
    if tag.auto_apply:
        out["auto_apply"] = True
    if tag.children:
        out["children"] = [_tag_to_data(c) for c in tag.children]
    return out


class _FlowListDumper(yaml.SafeDumper):
    """Writes lists of plain strings (keywords, exclude) on one line, as in design.md 3.4."""

    def represent_list(self, data: Any) -> yaml.Node:  # type: ignore[override]
        flow = bool(data) and all(isinstance(item, str) for item in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_FlowListDumper.add_representer(list, _FlowListDumper.represent_list)


# ---------------------------------------------------------------- parsing


# libyaml's C parser when the platform has it (a 2 MB file of flow mappings takes ~25 s in pure Python).
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # type: ignore[assignment]
# Caps checked on the parser's event stream before anything is composed or constructed.
MAX_YAML_NODES = 100_000  # the built-in taxonomy has ~650; a large real one ~50,000
MAX_YAML_DEPTH = 32


class _StrictLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """safe_load that refuses duplicate mapping keys and turns bad scalars into marked errors.

    Anchors, aliases, size and depth are checked first by `_check_events`, since the C composer cannot be
    hooked per event.
    """

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_show(key)} in one mapping", key_node.start_mark
                )
            if isinstance(key, str | int | float | bool):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Any) -> Any:
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, f"a number with {len(str(node.value))} digits is too long; quote it", node.start_mark
            ) from None

    def construct_yaml_timestamp(self, node: Any) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"'{str(node.value)[:40]}' looks like a date but is not a valid one; quote it if it is text",
                node.start_mark,
            ) from None


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _StrictLoader.construct_yaml_timestamp)


def _check_events(text: str) -> str | None:
    """Why a YAML text is refused (anchor, alias, too many values, too deep), or None.

    Streams parser events and stops at the first reason, so a hostile file costs at most MAX_YAML_NODES
    events before anything is composed or constructed.
    """
    loader = _StrictLoader(text)
    try:
        nodes = depth = 0
        while (event := loader.get_event()) is not None:
            if isinstance(event, yaml.StreamEndEvent):
                return None
            mark = event.start_mark
            line = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                return f"{line}: YAML anchors and aliases (& and *) are not allowed; write values out"
            if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    return f"{line}: YAML nesting is deeper than {MAX_YAML_DEPTH} levels"
            elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
                depth -= 1
            if isinstance(event, yaml.NodeEvent):
                nodes += 1
                if nodes > MAX_YAML_NODES:
                    return f"more than {MAX_YAML_NODES:,} YAML values; a taxonomy file is far smaller"
        return None
    finally:
        loader.dispose()


def _tab_at(text: str, mark: Any) -> bool:
    """Whether the YAML error mark points at a tab (libyaml's message does not name the character)."""
    if mark is None:
        return False
    lines = text.splitlines()
    line = lines[mark.line] if 0 <= mark.line < len(lines) else ""
    return line[mark.column : mark.column + 1] == "\t"


def _parse_yaml(text: str, source: str) -> Any:
    loader = _StrictLoader(text)
    try:
        refused = _check_events(text)
        if refused is None:
            return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if "'\\t'" in problem or _tab_at(text, mark):  # "found character ('\t') that cannot start any token"
            problem = "a tab character; indent with spaces, not tabs"
        raise TaxonomyError([Problem(source, "", f"YAML syntax error at {where}{problem}")]) from None
    except yaml.YAMLError as exc:
        raise TaxonomyError([Problem(source, "", f"YAML error: {str(exc)[:200]}")]) from None
    except RecursionError:
        raise TaxonomyError([Problem(source, "", "YAML nesting is too deep")]) from None
    except (ValueError, TypeError, OverflowError) as exc:  # a scalar the constructor cannot turn into a value
        raise TaxonomyError([Problem(source, "", f"YAML value error: {str(exc)[:200]}")]) from None
    finally:
        loader.dispose()
    raise TaxonomyError([Problem(source, "", refused)])


def _parse_json(text: str, source: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise ValueError(f"duplicate key {key!r} in one object")
            out[key] = value
        return out

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a valid JSON number")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        reason = f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise TaxonomyError([Problem(source, "", reason)]) from None
    except ValueError as exc:
        if "digits" in str(exc):  # the interpreter's limit on int() of very long digit strings
            reason = "a number has too many digits (over 4300); quote it or shorten it"
            raise TaxonomyError([Problem(source, "", reason)]) from None
        raise TaxonomyError([Problem(source, "", f"JSON error: {exc}")]) from None
    except RecursionError:
        raise TaxonomyError([Problem(source, "", "JSON nesting is too deep")]) from None


# ---------------------------------------------------------------- validation


class _Checker:
    """Walks parsed data, collecting every problem, and builds the taxonomy types."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def fail(self, path: str, reason: str) -> None:
        self.problems.append(Problem(self.source, path, reason))

    # -- generic field checks

    def keys(
        self, data: Mapping[Any, Any], allowed: tuple[str, ...], path: str, required: tuple[str, ...]
    ) -> None:
        for key in data:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                near = f"did you mean '{hint[0]}'? " if hint else ""
                where = f"{path}.{mask(str(key))}" if path else mask(str(key))
                self.fail(where, f"unknown key {_show(key)}; {near}allowed keys: {', '.join(allowed)}")
        for key in required:
            if key not in data:
                self.fail(f"{path}.{key}" if path else key, f"'{key}' is required")

    def mapping(self, value: Any, path: str, what: str) -> Mapping[Any, Any] | None:
        if isinstance(value, Mapping):
            return value
        self.fail(path, f"{what} must be a mapping (key: value), got {_type_name(value)}")
        return None

    def boolean(self, data: Mapping[Any, Any], key: str, path: str) -> bool:
        value = data.get(key, False)
        if isinstance(value, bool):
            return value
        self.fail(f"{path}.{key}", f"'{key}' must be true or false, got {_type_name(value)}")
        return False

    def text(self, value: Any, path: str, what: str, limit: int) -> str | None:
        if not isinstance(value, str):
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            # a personal number is said now, not after the user quotes it and tries again
            if numeric and isinstance(value, int) and self.personal(str(value), path, f"{what} (a number)"):
                return None
            hint = "; quote it in YAML" if numeric else ""
            self.fail(path, f"{what} must be a string, got {_type_name(value)}{hint}")
            return None
        stripped = value.strip()
        if not stripped:
            self.fail(path, f"{what} must not be empty")
            return None
        if _SURROGATE.search(stripped):
            reason = f"{what} contains an unpaired surrogate (\\ud800-\\udfff escape); write the character itself"
            self.fail(path, reason)
            return None
        if len(stripped) > limit:
            self.fail(path, f"{what} is {len(stripped)} characters long; at most {limit} allowed")
            return None
        if _CONTROL.search(stripped):
            self.fail(path, f"{what} contains a control character (tab, newline …); remove it")
            return None
        if self.personal(stripped, path, what):
            return None
        return stripped

    def personal(self, text: str, path: str, what: str) -> bool:
        """Record a problem when `text` holds an ID, phone or bank card number; True if it does."""
        hits = find_pii(text)
        if hits:
            kinds = sorted({describe(h) for h in hits})
            reason = (
                f"{what} contains personal data ({', '.join(kinds)} at character {hits[0].start + 1}); "
                "tags must never hold ID, phone or bank card numbers"
            )
            self.fail(path, reason)
        return bool(hits)

    def name(self, value: Any, path: str, what: str) -> str | None:
        """A checked display name: text that a spreadsheet would not run as a formula."""
        name = self.text(value, path, what, MAX_NAME)
        if name is None:
            return None
        start = formula_start(name)
        if what == "tag name" and normalise(name)[:1] in ("+", "-"):
            return name  # tag_name explains this one as command syntax
        if start is not None:
            self.fail(
                path,
                f"{what} {_show(name)} starts with {describe_start(start)}, which spreadsheet programs run as a "
                "formula when a report is opened; start the name with a letter or digit",
            )
            return None
        return name

    def phrases(self, data: Mapping[Any, Any], key: str, path: str) -> tuple[str, ...]:
        value = data.get(key) or []  # an empty `keywords:` in YAML is null
        where = f"{path}.{key}"
        if not isinstance(value, list):
            self.fail(where, f"'{key}' must be a list of strings, got {_type_name(value)}")
            return ()
        out: list[str] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(value):
            phrase = self.text(
                item, f"{where}[{i}]", "keyword" if key == "keywords" else "phrase", MAX_KEYWORD
            )
            if phrase is None:
                continue
            norm = name_key(phrase)
            if norm in seen:
                self.fail(
                    f"{where}[{i}]", f"'{phrase}' repeats {where}[{seen[norm]}] (same after normalisation)"
                )
                continue
            seen[norm] = i
            out.append(phrase)
        return tuple(out)

    # -- structure

    def taxonomy(self, data: Any) -> Taxonomy | None:
        if data is None:
            self.fail("", "the file is empty; it needs 'version: 1' and 'dimensions'")
            return None
        root = self.mapping(data, "", "the top level")
        if root is None:
            return None
        self.keys(root, _TOP_KEYS, "", ("version", "dimensions"))
        version = root.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version != 1:
            self.fail("version", f"unsupported version {version!r}; this Kebiao reads version 1")
        dimensions = self.dimensions(root.get("dimensions", []))
        channels = self.channels(root.get("channels") or {}, dimensions)
        ruleset = parse_rules_section(root, dimensions, self.fail)
        if self.problems:
            return None
        return Taxonomy(version=1, dimensions=dimensions, channels=MappingProxyType(channels), rules=ruleset)

    def dimensions(self, value: Any) -> tuple[Dimension, ...]:
        if not isinstance(value, list):
            self.fail("dimensions", f"'dimensions' must be a list, got {_type_name(value)}")
            return ()
        if not value:
            self.fail("dimensions", "'dimensions' is empty; a taxonomy needs at least one dimension")
        out: list[Dimension] = []
        keys: dict[str, int] = {}
        names: dict[str, int] = {}
        for i, item in enumerate(value):
            path = f"dimensions[{i}]"
            dim = self.dimension(item, path)
            if dim is None:
                continue
            if dim.key in keys:
                self.fail(f"{path}.key", f"key '{dim.key}' is already used by dimensions[{keys[dim.key]}]")
            keys.setdefault(dim.key, i)
            norm = name_key(dim.name)
            if norm in names:
                self.fail(f"{path}.name", f"name '{dim.name}' is already used by dimensions[{names[norm]}]")
            names.setdefault(norm, i)
            out.append(dim)
        return tuple(out)

    def dimension(self, value: Any, path: str) -> Dimension | None:
        data = self.mapping(value, path, "a dimension")
        if data is None:
            return None
        self.keys(data, _DIMENSION_KEYS, path, ("key", "name"))
        key = data.get("key")
        if "key" in data and (not isinstance(key, str) or not _KEY.fullmatch(key)):
            shown = _show(key)
            self.fail(
                f"{path}.key",
                f"key {shown} is not a stable identifier; use lower-case letters, digits and '_', "
                "starting with a letter (e.g. stage)",
            )
        name = self.name(data["name"], f"{path}.name", "dimension name") if "name" in data else None
        exclusive = self.boolean(data, "exclusive", path)
        visibility = data.get("visibility", "all")
        if visibility not in [v.value for v in Visibility]:
            shown = _show(visibility)
            self.fail(f"{path}.visibility", f"visibility {shown} is not one of: all, managers")
            visibility = "all"
        tags = self.dimension_tags(data.get("tags") or [], path, key if isinstance(key, str) else "")
        sync, crm_fields = self.crm_sync(data, path, tags)
        if not isinstance(key, str) or name is None:
            return None
        return Dimension(
            key=key,
            name=name,
            exclusive=exclusive,
            visibility=Visibility(visibility),
            tags=tags,
            sync=sync,
            crm_fields=crm_fields,
        )

    def crm_sync(
        self, data: Mapping[Any, Any], path: str, tags: tuple[TagDef, ...]
    ) -> tuple[SyncMode, Mapping[str, Mapping[str, str]]]:
        """A dimension's optional `sync` (crm | kebiao | none) and `crm_fields` (field -> value -> tag)."""
        raw = data.get("sync", "none")
        if raw not in [m.value for m in SyncMode]:
            self.fail(f"{path}.sync", f"sync {_show(raw)} is not one of: crm, kebiao, none")
            raw = "none"
        mode = SyncMode(raw)
        fields = self.mapping(data.get("crm_fields") or {}, f"{path}.crm_fields", "'crm_fields'")
        if not fields:
            return mode, MappingProxyType({})
        if mode is not SyncMode.CRM:
            self.fail(f"{path}.crm_fields", "'crm_fields' needs 'sync: crm' (CRM fields only flow into Kebiao)")
        names = {name_key(t.name): t.name for d in tags for t in _walk(d)}
        out: dict[str, Mapping[str, str]] = {}
        for field_name, values in fields.items():
            where = f"{path}.crm_fields.{mask(str(field_name))}"
            field_text = self.text(field_name, where, "CRM field name", MAX_NAME)
            table = self.mapping(values, where, "a CRM field's values")
            if field_text is None or table is None:
                continue
            out[field_text] = MappingProxyType(self.crm_values(table, where, names))
        return mode, MappingProxyType(out)

    def crm_values(self, table: Mapping[Any, Any], where: str, names: dict[str, str]) -> dict[str, str]:
        """One field's `CRM value: tag name` pairs; every tag must belong to the dimension."""
        out: dict[str, str] = {}
        for value, tag in table.items():
            crm_value = str(value).strip()
            tag_name = tag if isinstance(tag, str) else None
            known = names.get(name_key(tag_name)) if tag_name else None
            if known is None:
                reason = f"value {_show(crm_value)} maps to {_show(tag)}, which is not a tag of this dimension"
                self.fail(f"{where}.{mask(crm_value)}", reason)
                continue
            out[crm_value] = known
        return out

    def dimension_tags(self, value: Any, path: str, dim_key: str) -> tuple[TagDef, ...]:
        if not isinstance(value, list):
            self.fail(f"{path}.tags", f"'tags' must be a list, got {_type_name(value)}")
            return ()
        seen: dict[str, str] = {}
        return self.tag_list(value, f"{path}.tags", dim_key, (), seen)

    def tag_list(
        self, items: list[Any], path: str, dim_key: str, parents: tuple[str, ...], seen: dict[str, str]
    ) -> tuple[TagDef, ...]:
        out: list[TagDef] = []
        for i, item in enumerate(items):
            tag = self.tag(item, f"{path}[{i}]", dim_key, parents, seen)
            if tag is not None:
                out.append(tag)
        return tuple(out)

    def tag(
        self, value: Any, path: str, dim_key: str, parents: tuple[str, ...], seen: dict[str, str]
    ) -> TagDef | None:
        data = self.mapping(value, path, "a tag")
        if data is None:
            return None
        self.keys(data, _TAG_KEYS, path, ("name",))
        name = self.name(data["name"], f"{path}.name", "tag name") if "name" in data else None
        if name is not None:
            name = self.tag_name(name, f"{path}.name", seen)
        color = data.get("color")
        if color is not None and (not isinstance(color, str) or not _COLOR.fullmatch(color)):
            shown = _show(color)
            self.fail(f"{path}.color", f'color {shown} is not #RRGGBB (e.g. "#2F80ED"; quote it in YAML)')
            color = None
        description = data.get("description")
        if description is not None:
            description = self.text(description, f"{path}.description", "description", MAX_DESCRIPTION)
        keywords = self.phrases(data, "keywords", path)
        exclude = self.phrases(data, "exclude", path)
        ttl = data.get("ttl_days")
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= MAX_TTL_DAYS
        ):
            reason = f"ttl_days must be a whole number of days from 1 to {MAX_TTL_DAYS}, got {_show(ttl)}"
            self.fail(f"{path}.ttl_days", reason)
            ttl = None
        auto_apply = self.boolean(data, "auto_apply", path)
        own_path = (*parents, name or "?")
        children = self.children(data.get("children") or [], path, dim_key, own_path, seen)
        if name is None:
            return None
        return TagDef(
            name=name,
            dimension=dim_key,
            path=own_path,
            color=color,
            description=description,
            keywords=keywords,
            exclude=exclude,
            ttl_days=ttl,
            auto_apply=auto_apply,
            children=children,
        )

    def tag_name(self, name: str, path: str, seen: dict[str, str]) -> str | None:
        folded = normalise(name)
        if folded[0] in "+-" or ";" in folded or ":" in folded:
            reason = (
                f"tag name '{name}' must not start with '+' or '-' nor contain ';' or ':' (command syntax)"
            )
            self.fail(path, reason)
            return None
        norm = name_key(name)
        if norm in seen:
            self.fail(
                path,
                f"tag name '{name}' is already used by {seen[norm]} in this dimension (same after "
                "normalisation: full-width, case and traditional/simplified forms count as equal)",
            )
            return None
        seen[norm] = path
        return name

    def children(
        self, value: Any, path: str, dim_key: str, own_path: tuple[str, ...], seen: dict[str, str]
    ) -> tuple[TagDef, ...]:
        if not isinstance(value, list):
            self.fail(f"{path}.children", f"'children' must be a list of tags, got {_type_name(value)}")
            return ()
        if value and len(own_path) >= MAX_DEPTH:
            self.fail(
                f"{path}.children",
                f"tags nest at most {MAX_DEPTH} levels; this tag is already at level {len(own_path)}",
            )
            return ()
        return self.tag_list(value, f"{path}.children", dim_key, own_path, seen)

    def channels(self, value: Any, dimensions: tuple[Dimension, ...]) -> dict[str, str]:
        data = self.mapping(value, "channels", "'channels'")
        if data is None:
            return {}
        owners: dict[str, list[TagDef]] = {}
        for dim in dimensions:
            for tag in dim.iter_tags():
                owners.setdefault(name_key(tag.name), []).append(tag)
        out: dict[str, str] = {}
        for state, tag_name in data.items():
            path = f"channels.{mask(str(state))}"
            if not isinstance(state, str) or not state.strip() or len(state) > MAX_STATE:
                self.fail(
                    path,
                    f"channel state must be a non-empty string of at most {MAX_STATE} characters "
                    f"(quote numbers in YAML), got {_type_name(state)}",
                )
                continue
            if not isinstance(tag_name, str):
                self.fail(path, f"channel tag must be a tag name (string), got {_type_name(tag_name)}")
                continue
            matches = owners.get(name_key(tag_name), [])
            if not matches:
                self.fail(path, f"tag '{tag_name}' is not in the taxonomy; add it to a dimension first")
            elif len(matches) > 1:
                dims = ", ".join(t.dimension for t in matches)
                self.fail(path, f"tag '{tag_name}' exists in several dimensions ({dims}); rename one")
            else:
                out[state] = matches[0].name
        return out


def _walk(tag: TagDef) -> list[TagDef]:
    """A tag and all its descendants."""
    return [tag, *(t for c in tag.children for t in _walk(c))]


def _build(data: Any, source: str) -> Taxonomy:
    checker = _Checker(source)
    taxonomy = checker.taxonomy(data)
    if taxonomy is None:
        raise TaxonomyError([replace(p, where=readable_path(p.path, data)) for p in checker.problems])
    return taxonomy


_STEP = re.compile(r"(dimensions|tags|children)\[(\d+)\]")


def readable_path(path: str, data: Any) -> str:
    """`path` with each dimension's key and each tag's name from `data`: `dimensions[5](risk).tags[0](高危流失)`."""
    node: Any = data
    out: list[str] = []
    for part in path.split("."):
        step = _STEP.fullmatch(part)
        if step is None:
            out.append(part)
            node = node.get(part) if isinstance(node, Mapping) else None
            continue
        items = node.get(step.group(1)) if isinstance(node, Mapping) else None
        index = int(step.group(2))
        node = items[index] if isinstance(items, list) and index < len(items) else None
        label = node.get("key" if step.group(1) == "dimensions" else "name") if isinstance(node, Mapping) else None
        # A lone surrogate cannot be written out as UTF-8: it is shown as its escape, like the reason does.
        shown = mask(label.strip()).encode("utf-8", "backslashreplace").decode() if isinstance(label, str) else ""
        out.append(f"{part}({shown})" if shown and len(shown) <= MAX_NAME else part)
    return ".".join(out)


_TYPE_NAMES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "true/false"),
    (int, "a number"),
    (float, "a number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "a mapping"),
    (type(None), "nothing (null)"),
)


def _show(value: Any) -> str:
    """A user value for a message: strings quoted with personal numbers masked, other values by type."""
    return repr(mask(value)) if isinstance(value, str) else _type_name(value)


def _type_name(value: Any) -> str:
    """How a parsed value's type is named in messages."""
    for kind, label in _TYPE_NAMES:
        if isinstance(value, kind):
            small = isinstance(value, bool | float) or (isinstance(value, int) and abs(value) < 10**6)
            return f"{label} ({value!r})" if small else label  # long numbers may be personal data
    return {"datetime": "a date/time", "date": "a date"}.get(type(value).__name__, type(value).__name__)


# ---------------------------------------------------------------- rules and webhooks sections


def parse_rules_section(
    root: Mapping[Any, Any], dimensions: tuple[Dimension, ...], fail: Callable[[str, str], None]
) -> RuleSet:
    """The `rules:` and `webhooks:` sections, checked against the file's tags (problems go to `fail`)."""
    if root.get("rules") is None and root.get("webhooks") is None:
        return RuleSet()
    owners: dict[str, list[Dimension]] = {}
    for dim in dimensions:
        for tag in dim.iter_tags():
            owners.setdefault(name_key(tag.name), []).append(dim)

    def dimension_of(name: str) -> tuple[str, bool] | None:
        found = owners.get(name_key(name))
        return (found[0].key, found[0].exclusive) if found else None

    parser = RulesParser(fail, lambda name: name_key(name) in owners, dimension_of)
    return parser.parse(root.get("rules"), root.get("webhooks"))


def merge_rules_data(data: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Append a template's rules and webhooks to the base file data (names must stay unique)."""
    for key in ("webhooks", "rules"):
        if extra.get(key):
            data.setdefault(key, []).extend(extra[key])
