"""Bot Framework models as the JSON the Bot Connector receives, without msrest's per-node machinery.

msrest's `Serializer.body` first rebuilds the whole model graph (a deserialising pass), validates it, then
serialises every node through a chain of type lookups: an Adaptive Card of a few hundred nodes took ~1.5 ms
per reply. `to_wire` walks the same `_attribute_map`s and writes the same dict, key for key and in the same
order; a node it does not know how to write exactly (dates, enums, non-JSON values, a dict where a model
belongs) is handed to msrest itself, so the output never differs from `Serializer.body`.

A request body (`to_wire_json`) does not copy the `object` values (card content, channel data) at all: they
go to `json.dumps` as they are, and whatever JSON has no form for goes to msrest. Copying a card first was half
of writing a reply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from msrest.serialization import Model, Serializer

# msrest splits a key on unescaped dots (flattened properties); no Bot Framework model uses them, but a model
# that did is left to msrest whole.
_FLATTENED = re.compile(r"(?<!\\)\.")
_JSON_SCALARS = (str, int, float, bool)
_STR = frozenset({str})


Objects = Callable[[Any], Any]  # how an `object` attribute's value is written


class _Unsupported(Exception):
    """A shape the fast path does not write exactly: the caller falls back to msrest for the whole body."""


def to_wire(serializer: Serializer, model: Model, data_type: str) -> Any:
    """`serializer.body(model, data_type)`, written directly where that gives the identical result."""
    try:
        return _model(serializer, model)
    except _Unsupported:
        return serializer.body(model, data_type)


def to_wire_json(serializer: Serializer, model: Model, data_type: str) -> str:
    """`json.dumps(to_wire(serializer, model, data_type))`, the `object` values (card content, channel data)
    written by `json.dumps` as they are, not copied first.

    For JSON values (all Kebiao sends) that is the same text. Where msrest would write the `str()` of a value
    it has no JSON for (a tuple, a str or int subclass such as an enum member, a dict or list subclass) this
    writes its JSON value instead; anything else JSON has no value for (a date, a model) is written by msrest.
    """
    try:
        body = _model(serializer, model, _as_is)
    except _Unsupported:
        return json.dumps(serializer.body(model, data_type))
    return json.dumps(body, default=serializer.serialize_object)


def _as_is(value: Any) -> Any:
    return value


def model_to_wire(serializer: Serializer, model: Model) -> Any:
    """`serializer._serialize(model)` (what botbuilder's serializer_helper returns), written directly where
    that gives the identical result: for a tree of models the fast path writes what `body` writes, and `body`
    only differs from `_serialize` where it rebuilds a dict that stands for a model, which the fast path
    leaves to msrest."""
    try:
        return _model(serializer, model)
    except _Unsupported:
        return serializer._serialize(model)


def _model(serializer: Serializer, model: Any, objects: Objects | None = None) -> dict[str, Any]:
    if not isinstance(model, Model):
        raise _Unsupported  # a dict or anything else where a model belongs: msrest would rebuild it first
    fields = _fields(type(model))
    out: dict[str, Any] = {}
    for attr, key, data_type in fields:
        if key is None:  # additional_properties with an empty key: written in place, as msrest does
            extra = model.additional_properties
            if extra is not None:
                out.update(extra)
            continue
        value = getattr(model, attr)
        if value is None:
            continue
        if key not in out:  # msrest keeps an additional property that came first under the same key
            out[key] = _typed(serializer, value, data_type, objects)
    return out


_Fields = tuple[tuple[str, str | None, str], ...]
# Keyed with the map's size too: msrest's enable_additional_properties_sending adds to a class's map later.
_FIELDS: dict[tuple[type, int], _Fields | None] = {}


def _fields(cls: type[Model]) -> _Fields:
    """(attribute, JSON key or None for inline additional properties, type) of a model class, checked once."""
    key = (cls, len(cls._attribute_map))
    if key not in _FIELDS:
        _FIELDS[key] = _plan(cls)
    fields = _FIELDS[key]
    if fields is None:
        raise _Unsupported
    return fields


def _plan(cls: type[Model]) -> _Fields | None:
    if cls._validation or cls.is_xml_model():
        return None  # constraints to check, or XML: msrest's whole path
    fields: list[tuple[str, str | None, str]] = []
    for attr, desc in cls._attribute_map.items():
        key = desc["key"]
        if attr == "additional_properties" and key == "":
            fields.append((attr, None, desc["type"]))
        elif _FLATTENED.search(key) or "\\" in key:
            return None  # flattened or escaped keys (no Bot Framework model has them): msrest's whole path
        else:
            fields.append((attr, key, desc["type"]))
    return tuple(fields)


def _typed(serializer: Serializer, value: Any, data_type: str, objects: Objects | None = None) -> Any:
    """One attribute's value by its declared type (msrest `serialize_data`); `object` ones by `objects`."""
    if data_type == "str":
        return value if type(value) is str else serializer.serialize_data(value, data_type)
    if data_type == "object":
        return _plain(serializer, value) if objects is None else objects(value)
    if data_type in ("bool", "int", "float") or data_type in serializer.serialize_type:
        return serializer.serialize_data(value, data_type)
    if data_type.startswith("[") and data_type.endswith("]"):
        if not isinstance(value, list):
            raise _Unsupported
        inner = data_type[1:-1]
        return [None if item is None else _typed(serializer, item, inner, objects) for item in value]
    if data_type.startswith("{") and data_type.endswith("}"):
        if type(value) is not dict or any(type(k) is not str for k in value):
            raise _Unsupported
        inner = data_type[1:-1]
        return {k: None if v is None else _typed(serializer, v, inner, objects) for k, v in value.items()}
    dependency = serializer.dependencies.get(data_type)
    if dependency is None or not issubclass(dependency, Model):
        return serializer.serialize_data(value, data_type)  # an enum or a name msrest resolves itself
    return _model(serializer, value, objects)


def _plain(serializer: Serializer, value: Any) -> Any:
    """An `object` attribute (card content, channel data): JSON values as they are (msrest `serialize_object`)."""
    kind = type(value)
    if value is None or kind in _JSON_SCALARS:
        return value
    if kind is dict:
        if set(map(type, value)) <= _STR:  # every key exactly a str (a C loop, not a generator)
            # Scalars are kept without a call each: most of a card's nodes are strings.
            return {k: v if v is None or type(v) in _JSON_SCALARS else _plain(serializer, v) for k, v in value.items()}
    elif kind is list:
        return [item if item is None or type(item) in _JSON_SCALARS else _plain(serializer, item) for item in value]
    return serializer.serialize_object(value)  # models, dates, enums, anything else: msrest decides
