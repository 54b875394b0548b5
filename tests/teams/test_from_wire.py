"""The lean inbound parse builds the model msrest builds, and fails exactly where and how msrest fails."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from botbuilder.schema import Activity, ConversationReference, Mention, ResourceResponse
from botframework.connector.aio import ConnectorClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msrest.serialization import Deserializer, Model

from bots.teams.bot import _mentions
from bots.teams.connector import _resource_response
from bots.teams.from_wire import from_wire
from tests.teams.conftest import APP_ID
from tests.teams.tokens import BOT_TOKEN, StaticTokenCredentials

PAYLOADS = Path(__file__).resolve().parent.parent / "payloads" / "teams"
FILES = sorted(PAYLOADS.glob("*.json")) + sorted((PAYLOADS / "published").glob("*.json"))


def strict(value: Any) -> Any:
    """A value with every type spelled out: a model's class and attributes, a date's zone object and name."""
    if isinstance(value, Model):
        return (type(value).__name__, {k: strict(v) for k, v in sorted(vars(value).items())})
    if isinstance(value, datetime):
        zone = value.tzinfo
        return ("datetime", value.isoformat(), type(zone).__name__, value.tzname(), value.utcoffset())
    if isinstance(value, dict):
        return ("dict", [(strict(k), strict(v)) for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))])
    if isinstance(value, list):
        return ("list", [strict(v) for v in value])
    return (type(value).__name__, value)


def both(cls: type[Model], data: Any) -> tuple[Any, Any]:
    """(msrest's outcome, the lean outcome) for the same data: a strict model, or the exception's type and text."""
    outcomes = []
    for parse in (lambda d: cls.deserialize(d), lambda d: from_wire(cls, d)):
        try:
            outcomes.append(strict(parse(copy.deepcopy(data))))
        except Exception as exc:  # msrest raises several types; both must raise the same
            outcomes.append(("raised", type(exc).__name__, str(exc)))
    return outcomes[0], outcomes[1]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_recorded_teams_payload_parses_to_the_msrest_activity(path: Path) -> None:
    payload = json.loads(path.read_text(encoding="utf-8"))
    expected, lean = both(Activity, payload)
    assert lean == expected
    assert from_wire(Activity, copy.deepcopy(payload)) == Activity().deserialize(copy.deepcopy(payload))


def test_the_fast_path_is_taken_for_teams_payloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Otherwise the equality above would hold trivially."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("msrest was asked")

    payloads = [json.loads(path.read_text(encoding="utf-8")) for path in FILES]
    monkeypatch.setattr(Activity, "deserialize", refuse)
    monkeypatch.setattr(Deserializer, "deserialize_iso", refuse)
    for payload in payloads:
        assert isinstance(from_wire(Activity, payload), Activity)


ODD = {
    "a number where a string is declared": {"type": "message", "text": 5},
    "a string where a bool is declared": {"type": "message", "historyDisclosed": "true"},
    "1 where a bool is declared": {"type": "message", "historyDisclosed": 1},
    "a bad date": {"type": "message", "timestamp": "25/11/2024"},
    "a lower-case date": {"type": "message", "timestamp": "2024-11-25t03:20:00z"},
    "a date out of range": {"type": "message", "timestamp": "0001-01-01T00:00:00+01:00"},
    "a number for a date": {"type": "message", "timestamp": 1732504800},
    "a string where an account belongs": {"type": "message", "from": "29:1"},
    "a list where an account belongs": {"type": "message", "conversation": [1]},
    "an object where a list belongs": {"type": "message", "entities": {"type": "mention"}},
    "a string inside a list of models": {"type": "message", "membersAdded": ["28:bot"]},
    "nulls inside lists": {"type": "message", "membersAdded": [None, {"id": "1"}], "listenFor": [None, "a"]},
    "a dict for a list of strings": {"type": "message", "listenFor": {"a": 1}},
    "numbers in a list of strings": {"type": "message", "listenFor": [1, 2]},
    "nested unknown keys": {"type": "message", "conversation": {"id": "c", "tenantId": "t", "x": None}},
    "null unknown key": {"type": "message", "unknown": None},
    "a float where an int is declared": {"type": "message", "value": {"n": 1.5}, "channelData": [1, None, {"a": []}]},
    "a relates-to reference": {"type": "message", "relatesTo": {"conversation": {"id": "c"}, "bot": {"id": "b"}}},
    "a semantic action with entities": {
        "type": "message",
        "semanticAction": {"id": "s", "state": "start", "entities": {"e": {"type": "x", "k": 1}}},
    },
    "a list for a dict of models": {
        "type": "message",
        "semanticAction": {"entities": [{"key": "e", "value": {"type": "x"}}]},
    },
    "seven fraction digits and an offset": {"type": "message", "localTimestamp": "2024-11-25T11:20:00.1234567+08:00"},
    "a comma fraction": {"type": "message", "timestamp": "2024-11-25T03:20:00,5Z"},
}


@pytest.mark.parametrize("name", list(ODD))
def test_odd_shapes_end_as_msrest_ends_them(name: str) -> None:
    expected, lean = both(Activity, ODD[name])
    assert lean == expected


def test_a_connector_answer_parses_as_msrest_parses_it() -> None:
    for data in ({"id": "1:7"}, {"id": "1:7", "extra": True}, {}, None, "text", {"id": 3}):
        expected, lean = both(ResourceResponse, data)
        assert lean == expected


SCALAR = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
DATES = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.one_of(st.none(), st.timezones())
).map(lambda d: d.isoformat().replace("+00:00", "Z"))
TEXT = st.text(max_size=12)


def _account(extra: st.SearchStrategy[Any] = JSON) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "id": TEXT | SCALAR,
            "name": TEXT,
            "aadObjectId": TEXT,
            "role": TEXT,
            "tenantId": TEXT,
            "conversationType": TEXT,
            "isGroup": st.booleans() | SCALAR,
            "properties": JSON,
            "extra": extra,
        },
    )


ACTIVITIES = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "invoke", "conversationUpdate", "event"])},
    optional={
        "id": TEXT,
        "timestamp": DATES | SCALAR,
        "localTimestamp": DATES,
        "localTimezone": TEXT,
        "serviceUrl": TEXT,
        "channelId": TEXT | SCALAR,
        "from": _account(),
        "conversation": _account() | SCALAR,
        "recipient": _account(),
        "textFormat": TEXT,
        "membersAdded": st.lists(_account() | st.none(), max_size=3),
        "reactionsAdded": st.lists(st.fixed_dictionaries({}, optional={"type": TEXT | SCALAR}), max_size=2),
        "historyDisclosed": st.booleans() | SCALAR,
        "locale": TEXT,
        "text": TEXT | SCALAR,
        "attachments": st.lists(
            st.fixed_dictionaries({}, optional={"contentType": TEXT, "content": JSON, "name": TEXT}), max_size=2
        ),
        "entities": st.lists(st.dictionaries(TEXT, JSON, max_size=3), max_size=3),
        "channelData": JSON,
        "replyToId": TEXT,
        "value": JSON,
        "name": TEXT,
        "listenFor": st.lists(TEXT | st.none(), max_size=3) | JSON,
        "suggestedActions": st.fixed_dictionaries(
            {},
            optional={"to": st.lists(TEXT, max_size=2), "actions": st.lists(st.dictionaries(TEXT, JSON), max_size=2)},
        ),
        "unknownKey": JSON,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=ACTIVITIES)
def test_any_activity_parses_to_the_msrest_activity(payload: dict[str, Any]) -> None:
    expected, lean = both(Activity, payload)
    assert lean == expected


@settings(max_examples=200, deadline=None)
@given(payload=st.dictionaries(TEXT, JSON, max_size=6), conversation=_account())
def test_any_json_object_parses_as_msrest_parses_it(payload: dict[str, Any], conversation: dict[str, Any]) -> None:
    payload = {**payload, "conversation": conversation}
    expected, lean = both(Activity, payload)
    assert lean == expected
    expected, lean = both(ConversationReference, payload)
    assert lean == expected


def test_object_values_are_copies_as_msrest_makes_them() -> None:
    """Changing the decoded body afterwards never reaches the activity (nor the other way round)."""
    payload = json.loads((PAYLOADS / "personal_message.json").read_text(encoding="utf-8"))
    payload["value"] = {"action": {"data": {"tags": ["VIP客户"]}}}
    activity = from_wire(Activity, payload)
    payload["channelData"]["tenant"]["id"] = "changed"
    payload["value"]["action"]["data"]["tags"].append("changed")
    assert activity.channel_data == {"tenant": {"id": "72f988bf-86f1-41af-91ab-2d7cd011db47"}}
    assert activity.value == {"action": {"data": {"tags": ["VIP客户"]}}}


@pytest.mark.parametrize("data", [{"id": "1:7"}, {"id": "1:7", "extra": [1]}, {}, None, "", {"id": 7}])
def test_the_lean_client_reads_an_answer_as_the_sdk_client_reads_it(data: Any) -> None:
    client = ConnectorClient(StaticTokenCredentials(APP_ID, BOT_TOKEN), base_url="http://127.0.0.1:1/")
    outcomes = []
    for read in (lambda d: client._deserialize("ResourceResponse", d), lambda d: _resource_response(client, d)):
        try:
            outcomes.append(strict(read(copy.deepcopy(data))))
        except Exception as exc:
            outcomes.append(("raised", type(exc).__name__, str(exc)))
    assert outcomes[0] == outcomes[1]


DATE_FORMS = st.builds(
    lambda year, month, day, hour, minute, second, fraction, zone: (
        f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{fraction}{zone}"
    ),
    st.integers(0, 9999) | st.sampled_from([1, 9999]),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 60),
    st.integers(0, 61),
    st.sampled_from(["", "."]) | st.from_regex(r"\.[0-9]{1,9}", fullmatch=True),
    st.sampled_from(["Z", "z", "+00:00", "-00:00", "", "+0800", "+08"])
    | st.from_regex(r"[+-][0-9]{2}:[0-9]{2}", fullmatch=True),
)


@settings(max_examples=1000, deadline=None)
@given(value=DATE_FORMS | DATES)
def test_any_date_is_read_as_msrest_reads_it(value: str) -> None:
    """The direct reading of Teams' date form gives msrest's datetime (zone object included) or msrest's error."""
    expected, lean = both(Activity, {"type": "message", "timestamp": value})
    assert lean == expected


@pytest.mark.parametrize(
    "value",
    [
        "2024-11-25T03:20:00.1234567Z",
        "2024-11-25T11:20:00.1234567+08:00",
        "0001-01-01T00:30:00+01:00",
        "0001-01-01T23:30:00-01:00",
        "9999-12-31T23:30:00-01:00",
        "9999-12-31T00:30:00+01:00",
        "2024-02-29T23:59:59.999999-23:59",
        "2023-02-29T00:00:00Z",
        "2024-11-25T24:00:00Z",
        "2024-11-25T03:20:60Z",
    ],
)
def test_edge_dates_are_read_as_msrest_reads_them(value: str) -> None:
    expected, lean = both(Activity, {"type": "message", "localTimestamp": value})
    assert lean == expected


def _sdk_mentions(activity: Activity) -> list[Mention]:
    """How mentions were read before: each entity serialised and deserialised by msrest."""
    return [
        Mention().deserialize({**entity.serialize(), **(entity.additional_properties or {})})
        for entity in activity.entities or []
        if (entity.type or "").lower() == "mention"
    ]


MENTIONS = st.fixed_dictionaries(
    {"type": st.sampled_from(["mention", "Mention"])},
    optional={
        "text": TEXT | SCALAR,
        "mentioned": _account() | SCALAR,
        "extra": JSON,
    },
)


@pytest.mark.parametrize("path", [p for p in FILES if "mention" in p.stem], ids=lambda p: p.stem)
def test_recorded_mentions_are_read_as_msrest_reads_them(path: Path) -> None:
    activity = from_wire(Activity, json.loads(path.read_text(encoding="utf-8")))
    assert _sdk_mentions(activity)
    assert strict(_mentions(activity)) == strict(_sdk_mentions(activity))


@settings(max_examples=200, deadline=None)
@given(entities=st.lists(MENTIONS | st.dictionaries(TEXT, JSON, max_size=3), max_size=3))
def test_any_mention_is_read_as_msrest_reads_it(entities: list[dict[str, Any]]) -> None:
    payload = {"type": "message", "entities": entities}
    try:
        activity = Activity().deserialize(copy.deepcopy(payload))
        expected = strict(_sdk_mentions(activity))
    except Exception as exc:
        expected = ("raised", type(exc).__name__, str(exc))
    try:
        activity = from_wire(Activity, copy.deepcopy(payload))
        lean = strict(_mentions(activity))
    except Exception as exc:
        lean = ("raised", type(exc).__name__, str(exc))
    assert lean == expected
