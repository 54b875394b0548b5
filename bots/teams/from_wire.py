"""Bot Framework JSON (an incoming activity, a connector answer) as models, without msrest's generic Deserializer.

`Model.deserialize` copies every attribute description, runs two key extractors per attribute and dispatches
every value through a chain of type lookups: parsing one Teams message took more CPU than anything else the
endpoint does before the bot runs. `from_wire` walks the same `_attribute_map`s with a plan made once per
class and builds the same models the same way (`cls(**attributes)`, unknown keys kept in
`additional_properties`), so the result equals msrest's. A value it does not read exactly as msrest does
(a number where a string is declared, a date msrest would refuse, a list of key/value pairs for a dict, a
model with validation, discriminators, flattened keys or XML) is handed to msrest for the whole body, so
the result — or the error — is always msrest's own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from isodate import isotzinfo
from msrest.exceptions import DeserializationError
from msrest.serialization import Deserializer, Model

M = TypeVar("M", bound=Model)
Convert = Callable[[Any], Any]


_NOT_MADE: Any = object()


class _Unsupported(Exception):
    """A shape the fast path does not read exactly: the caller falls back to msrest for the whole body."""


def from_wire(cls: type[M], data: Any) -> M:
    """`cls.deserialize(data)` for decoded JSON `data`, read directly where that gives an equal model."""
    if type(data) is dict:
        try:
            return _model(_plan(cls), data)
        except _Unsupported:
            pass
    return cls.deserialize(data)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Plan:
    """How to build one model class: (attribute, JSON key, converter) per attribute, and the keys it names."""

    cls: type[Model]
    fields: tuple[tuple[str, str, Convert], ...]
    known: frozenset[str]


_PLANS: dict[tuple[type[Model], type[Model]], _Plan | None] = {}  # (root, model) → plan, made once


def _plan(root: type[Model]) -> _Plan:
    """The plan of `root`; type names resolve the way msrest resolves them for `root.deserialize`."""
    plan = _PLANS.get((root, root), _NOT_MADE)
    if plan is _NOT_MADE:
        plan = _plan_of(root, root._infer_class_models(), root)
    if not isinstance(plan, _Plan):
        raise _Unsupported
    return plan


def _plan_of(cls: type[Model], dependencies: Mapping[str, Any], root: type[Model]) -> _Plan | None:
    key = (root, cls)
    if key not in _PLANS:
        _PLANS[key] = _build(cls, dependencies, root)
    return _PLANS[key]


def _build(cls: type[Model], dependencies: Mapping[str, Any], root: type[Model]) -> _Plan | None:
    attributes = cls._attribute_map
    if cls._validation or cls.__dict__.get("_subtype_map") or cls.is_xml_model():
        return None  # readonly/constant attributes, discriminators or XML: msrest's whole path
    if "additional_properties" in attributes:
        return None  # a declared catch-all attribute: msrest's own rules
    fields = []
    for attr, description in attributes.items():
        json_key = description["key"]
        if not json_key or "." in json_key or "\\" in json_key:
            return None  # flattened or escaped keys
        convert = _converter(description["type"], dependencies, root)
        if convert is None:
            return None
        fields.append((attr, json_key, convert))
    return _Plan(cls, tuple(fields), frozenset(key for _, key, _ in fields))


def _converter(data_type: str, dependencies: Mapping[str, Any], root: type[Model]) -> Convert | None:
    """How msrest's `deserialize_data(value, data_type)` reads a non-null JSON value, or None: not supported."""
    simple = _SIMPLE.get(data_type)
    if simple is not None:
        return simple
    if len(data_type) > 2 and data_type[0] == "[" and data_type[-1] == "]":
        item = _converter(data_type[1:-1], dependencies, root)
        return None if item is None else _list_of(item)
    if len(data_type) > 2 and data_type[0] == "{" and data_type[-1] == "}":
        value = _converter(data_type[1:-1], dependencies, root)
        return None if value is None else _dict_of(value)
    dependency = dependencies.get(data_type)
    if isinstance(dependency, type) and issubclass(dependency, Model) and not issubclass(dependency, Enum):
        return _nested(dependency, dependencies, root)
    return None  # enums, 'long', 'duration', dates other than ISO 8601, unknown names: msrest


def _nested(cls: type[Model], dependencies: Mapping[str, Any], root: type[Model]) -> Convert:
    """A model attribute; its plan is made on first use (models may contain themselves)."""

    def convert(value: Any) -> Any:
        if type(value) is not dict:
            raise _Unsupported  # msrest fails (or reads something else) here: let it say so
        plan = _plan_of(cls, dependencies, root)
        if plan is None:
            raise _Unsupported
        return _model(plan, value)

    return convert


def _model(plan: _Plan, data: dict[str, Any]) -> Any:
    """msrest `_deserialize`: every declared attribute (None when absent), then the unnamed keys."""
    attributes = {}
    for attr, json_key, convert in plan.fields:
        value = data.get(json_key)
        attributes[attr] = None if value is None else convert(value)
    try:
        model = plan.cls(**attributes)
    except TypeError:
        raise _Unsupported from None
    known = plan.known
    extra = {key: value for key, value in data.items() if key not in known}
    if extra:
        model.additional_properties = extra
    return model


def _list_of(item: Convert) -> Convert:
    def convert(value: Any) -> Any:
        if type(value) is not list:
            raise _Unsupported
        return [None if entry is None else item(entry) for entry in value]

    return convert


def _dict_of(item: Convert) -> Convert:
    def convert(value: Any) -> Any:
        if type(value) is not dict:
            raise _Unsupported  # msrest also reads a list of {key, value} pairs
        return {key: None if entry is None else item(entry) for key, entry in value.items()}

    return convert


def _exactly(kind: type) -> Convert:
    """A JSON value already of the declared basic type is kept as it is (msrest converts anything else)."""

    def convert(value: Any) -> Any:
        if type(value) is not kind:
            raise _Unsupported
        return value

    return convert


def _iso_8601(value: Any) -> datetime:
    """msrest `deserialize_iso`; the form Teams sends is read directly into the same datetime (see _iso_date)."""
    if type(value) is not str:
        raise _Unsupported
    date = _iso_date(value)
    if date is not None:
        return date
    try:
        return Deserializer.deserialize_iso(value)  # type: ignore[no-any-return]
    except DeserializationError:
        raise _Unsupported from None


# YYYY-MM-DDThh:mm:ss[.fraction](Z|±hh:mm), upper case, ASCII digits: msrest upper-cases it (a no-op), keeps six
# fraction digits (the only run of more than four digits), and isodate reads it with its first time pattern.
_ISO_DATE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(Z|([+-])([0-9]{2}):([0-9]{2}))"
)


def _iso_date(value: str) -> datetime | None:
    """The datetime msrest + isodate make of `value` in the common form, or None: another form, or invalid."""
    match = _ISO_DATE.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone, sign, zone_hour, zone_minute = match.groups()
    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    if zone == "Z":
        tzinfo = isotzinfo.build_tzinfo("Z")
    elif int(zone_hour) * 60 + int(zone_minute) < 24 * 60:
        tzinfo = isotzinfo.build_tzinfo(zone, sign, int(zone_hour), int(zone_minute))
    else:
        return None  # an offset Python refuses (on first use): msrest says so
    try:
        parsed = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo)
        # msrest refuses a date whose UTC year leaves 1..9999; an offset under 24 hours moves it by at most one.
        utc_year = parsed.year if 1 < parsed.year < 9999 else parsed.utctimetuple().tm_year
    except (ValueError, OverflowError):
        return None  # msrest says what is wrong
    if utc_year > 9999 or utc_year < 1:
        return None
    return parsed


def _json_object(value: Any) -> Any:
    """msrest `deserialize_object`: a fresh copy of a JSON value (anything else is msrest's to refuse)."""
    kind = type(value)
    if kind is dict:
        return {key: None if entry is None else _json_object(entry) for key, entry in value.items()}
    if kind is list:
        return [None if entry is None else _json_object(entry) for entry in value]
    if kind in (str, int, float, bool):
        return value
    raise _Unsupported


_SIMPLE: dict[str, Convert] = {
    "str": _exactly(str),
    "bool": _exactly(bool),
    "int": _exactly(int),
    "float": _exactly(float),
    "iso-8601": _iso_8601,
    "object": _json_object,
}
