"""Structural check of a built card that needs no schema file: 1.5 types only, known verbs, sane ids, size."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cards.adaptive import CARD_VERSION, MAX_CARD_BYTES, Card, card_bytes
from core.verbs import ALL_VERBS, DATA_KEYS

# Element and action types of Adaptive Cards 1.5 (Action.OpenUrl left out on purpose: cards carry no links).
ELEMENT_TYPES = frozenset(
    {
        "AdaptiveCard",
        "TextBlock",
        "RichTextBlock",
        "TextRun",
        "Image",
        "ImageSet",
        "Media",
        "Container",
        "ColumnSet",
        "Column",
        "FactSet",
        "ActionSet",
        "Table",
        "TableRow",
        "TableCell",
        "Input.Text",
        "Input.Number",
        "Input.Date",
        "Input.Time",
        "Input.Toggle",
        "Input.ChoiceSet",
    }
)
ACTION_TYPES = frozenset({"Action.Execute", "Action.Submit", "Action.ShowCard", "Action.ToggleVisibility"})


def problems(card: Card) -> list[str]:
    """Every structural problem of `card` (empty when it is fine)."""
    out: list[str] = []
    if card.get("type") != "AdaptiveCard" or card.get("version") != CARD_VERSION:
        out.append(f"root must be an AdaptiveCard version {CARD_VERSION}")
    size = card_bytes(card)
    if size > MAX_CARD_BYTES:
        out.append(f"card is {size} bytes, above {MAX_CARD_BYTES}")
    ids: list[str] = []
    targets: list[str] = []
    for path, node in _walk(card, "$"):
        kind = node.get("type")
        if "id" in node and isinstance(node["id"], str):
            ids.append(node["id"])
        if kind is None:
            continue
        if kind.startswith("Action."):
            out.extend(_action_problems(path, node))
            if kind == "Action.ToggleVisibility":
                targets.extend(
                    t if isinstance(t, str) else t.get("elementId", "") for t in node["targetElements"]
                )
        elif kind not in ELEMENT_TYPES:
            out.append(f"{path}: element type {kind!r} is not in Adaptive Cards 1.5")
        if kind == "TextBlock" and not isinstance(node.get("text"), str):
            out.append(f"{path}: TextBlock without text")
    out.extend(f"duplicate element id {i!r}" for i in sorted({i for i in ids if ids.count(i) > 1}))
    out.extend(f"toggle targets unknown id {t!r}" for t in targets if t not in ids)
    return out


def _action_problems(path: str, node: dict[str, Any]) -> list[str]:
    kind = node["type"]
    if kind not in ACTION_TYPES:
        return [f"{path}: action type {kind!r} is not allowed"]
    if kind != "Action.Execute":
        return []
    verb = node.get("verb")
    if verb not in ALL_VERBS:
        return [f"{path}: unknown verb {verb!r}"]
    missing = [k for k in DATA_KEYS[verb] if k not in node.get("data", {})]
    return [f"{path}: {verb} data lacks {missing}"] if missing else []


def _walk(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every dict inside the card (skipping action `data`, which is opaque to the host), depth first."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key != "data":
                yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")
