"""Regional tag libraries and tag icons: which customers a tag is for, and what counts as one emoji."""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tagging.normaliser import name_key
from tagging.suggestion import Suggestion
from tagging.taxonomy import Dimension, TagDef, Taxonomy

ZWJ = "\u200d"
_MODIFIERS = {"Mn", "Me", "Sk", "Cf"}  # variation selectors, keycap, skin tones, tag characters
_REGIONAL = range(0x1F1E6, 0x1F200)


def is_single_emoji(text: str) -> bool:
    """True for exactly one emoji: one pictograph with modifiers, a flag pair, or a ZWJ sequence of them."""
    if not text or len(text) > 16:
        return False
    for part in text.split(ZWJ):
        bases = [c for c in part if unicodedata.category(c) not in _MODIFIERS]
        if not bases or not all(unicodedata.category(c) == "So" for c in bases):
            return False
        flag = len(bases) == 2 and all(ord(c) in _REGIONAL for c in bases)
        if len(bases) != 1 and not flag:
            return False
        if unicodedata.category(part[0]) != "So":
            return False
    return True


def tag_scope(dimension: Dimension, tag: TagDef) -> tuple[str, ...]:
    """The regions a tag is for: its own, else its nearest ancestor's, else its dimension's (empty: all)."""
    if tag.regions:
        return tag.regions
    for parent in reversed(tag.path[:-1]):
        held = dimension.tag_named(parent)
        if held is not None and held.regions:
            return held.regions
    return dimension.regions


def in_scope(dimension: Dimension, tag: TagDef, region: str) -> bool:
    """True when the tag may be used for a customer of `region` (an unscoped tag is for everyone)."""
    scope = tag_scope(dimension, tag)
    return not scope or any(name_key(r) == name_key(region) for r in scope if region)


def in_regions(taxonomy: Taxonomy, suggestions: Iterable[Suggestion], regions: Sequence[str]) -> tuple[Suggestion, ...]:
    """The suggestions whose tag may be used for a customer of at least one of `regions` ("" : no region)."""
    out: list[Suggestion] = []
    for s in suggestions:
        dimension = taxonomy.dimension(s.dimension)
        tag = dimension.tag_like(s.tag) if dimension is not None else None
        if dimension is None or tag is None or any(in_scope(dimension, tag, r) for r in regions):
            out.append(s)  # a tag the taxonomy no longer holds is not this filter's to judge
    return tuple(out)


def scope_refusal(tag: TagDef, scope: tuple[str, ...], region: str) -> str:
    """Why a regional tag does not fit a customer, for a refusal message."""
    where = f"of region {region}" if region else "without a region"
    return f"tag {tag.name} is only for customers of {', '.join(scope)}; this customer is {where}"


def scoped_names(taxonomy: Taxonomy, region: str) -> frozenset[str]:
    """Name keys of the tags that are NOT for a customer of `region` (hidden from it)."""
    out: set[str] = set()
    for dimension in taxonomy.dimensions:
        for tag in dimension.iter_tags():
            if not in_scope(dimension, tag, region):
                out.add(name_key(tag.name))
    return frozenset(out)


def used_regions(taxonomy: Taxonomy) -> tuple[str, ...]:
    """Every region a dimension or tag of the taxonomy is scoped to, first seen first (one spelling each)."""
    seen: dict[str, str] = {}
    for dimension in taxonomy.dimensions:
        for name in (*dimension.regions, *(r for t in dimension.iter_tags() for r in t.regions)):
            seen.setdefault(name_key(name), name)
    return tuple(seen.values())


@dataclass(frozen=True, slots=True)
class RegionCheck:
    """Regions checked against a taxonomy: their known spellings, refusals (region, reason, closest) and warnings."""

    regions: tuple[str, ...]
    refused: tuple[tuple[str, str, str | None], ...] = ()
    warnings: tuple[str, ...] = ()


def check_regions(taxonomy: Taxonomy, regions: Sequence[str]) -> RegionCheck:
    """Check regions given to a user: against the `regions:` list when there is one, else against those in use.

    With a list an unknown name is refused (with the closest known one); without one a name no dimension or
    tag uses is only warned about, since customers' regions come from imports and CRMs, not the taxonomy (and
    a taxonomy without any regional tag warns about nothing).
    """
    declared = bool(taxonomy.regions)
    known = taxonomy.regions if declared else used_regions(taxonomy)
    by_key = {name_key(r): r for r in known}
    kept: list[str] = []
    refused: list[tuple[str, str, str | None]] = []
    warnings: list[str] = []
    listed = ", ".join(known) or "none"
    seen: set[str] = set()
    for region in regions:
        if name_key(region) in seen:
            continue  # a name given twice is checked (and warned about) once
        seen.add(name_key(region))
        match = by_key.get(name_key(region))
        if match is not None:
            kept.append(match)
            continue
        close = difflib.get_close_matches(name_key(region), list(by_key), n=1, cutoff=0.4)
        closest = by_key[close[0]] if close else None
        hint = f"; did you mean {closest}?" if closest else ""
        if declared:
            reason = f"region {region!r} is not in the taxonomy's regions list ({listed}){hint}"
            refused.append((region, reason, closest))
            continue
        kept.append(region)
        if not known:
            continue  # a taxonomy with no regional tags at all says nothing about which regions exist
        warnings.append(
            f"region {region!r} is used by no dimension or tag of the taxonomy in force (regions in use: {listed})"
            f"{hint}; it still counts for alerts on customers of that region"
        )
    return RegionCheck(tuple(dict.fromkeys(kept)), tuple(refused), tuple(warnings))
