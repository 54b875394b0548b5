"""Regional managers edit only their region's part of the taxonomy: the dimensions and tags scoped to it.

A manager with regions (`kebiao users set-role ID manager --region 华北`) may add, change, move or remove a
dimension or tag only when its scope, before and after the change, lies inside their regions; everything
unscoped (company-wide), the regions list, channels and rules stay with managers without a region and admins.
"""

from __future__ import annotations

from dataclasses import replace

from core.errors import NotAllowedError
from core.types import Role, User
from tagging.normaliser import name_key
from tagging.regions import tag_scope
from tagging.taxonomy import Dimension, TagDef, Taxonomy


class RegionalEditError(NotAllowedError):
    """A regional manager's change reaches outside their regions; `problems` names each part."""

    def __init__(self, regions: tuple[str, ...], problems: list[str]) -> None:
        mine = ", ".join(regions)
        super().__init__(
            f"as a manager of {mine} you may change only dimensions and tags scoped to {mine}: " + "; ".join(problems)
        )
        self.problems = tuple(problems)


def is_regional(user: User | None) -> bool:
    """A manager limited to regions (admins and managers without regions edit everything)."""
    return user is not None and user.role is Role.MANAGER and bool(user.regions)


def outside_regions(before: Taxonomy | None, after: Taxonomy, regions: tuple[str, ...]) -> list[str]:
    """Each part of the change from `before` to `after` that is not inside `regions` (empty: allowed)."""
    old = before or Taxonomy(version=1, dimensions=())
    problems: list[str] = []
    if old.regions != after.regions:
        problems.append("the regions list")
    if dict(old.channels) != dict(after.channels):
        problems.append("channels")
    if old.rules != after.rules:
        problems.append("rules and webhooks")
    old_dims = {d.key: d for d in old.dimensions}
    new_dims = {d.key: d for d in after.dimensions}
    for key in dict.fromkeys([*old_dims, *new_dims]):
        a, b = old_dims.get(key), new_dims.get(key)
        if _shell(a) != _shell(b) and not all(_inside(d.regions, regions) for d in (a, b) if d is not None):
            problems.append(f"dimension {key} (scope: {_scope_text(a, b)})")
        old_tags, new_tags = _tags(a), _tags(b)
        for name in dict.fromkeys([*old_tags, *new_tags]):
            x, y = old_tags.get(name), new_tags.get(name)
            if _bare(x) == _bare(y):
                continue
            scopes = [tag_scope(*pair) for pair in (x, y) if pair is not None]
            if not all(_inside(s, regions) for s in scopes):
                shown = next(pair[1].name for pair in (y, x) if pair is not None)
                problems.append(
                    f"tag {shown} in {key} (scope: {_scopes_text(scopes)})"
                )
    return problems


def check_regional_edit(user: User | None, before: Taxonomy | None, after: Taxonomy) -> None:
    """Raise RegionalEditError when a regional manager's change reaches outside their regions."""
    if user is None or not is_regional(user):
        return
    problems = outside_regions(before, after, user.regions)
    if problems:
        raise RegionalEditError(user.regions, problems)


def _inside(scope: tuple[str, ...], regions: tuple[str, ...]) -> bool:
    keys = {name_key(r) for r in regions}
    return bool(scope) and all(name_key(r) in keys for r in scope)


def _shell(dimension: Dimension | None) -> Dimension | None:
    """The dimension's own settings, without its tags."""
    return replace(dimension, tags=()) if dimension is not None else None


def _bare(pair: tuple[Dimension, TagDef] | None) -> TagDef | None:
    """A tag's own definition, without its children (their changes are judged on their own)."""
    return replace(pair[1], children=()) if pair is not None else None


def _tags(dimension: Dimension | None) -> dict[str, tuple[Dimension, TagDef]]:
    if dimension is None:
        return {}
    return {name_key(t.name): (dimension, t) for t in dimension.iter_tags()}


def _scope_text(*dims: Dimension | None) -> str:
    return _scopes_text([d.regions for d in dims if d is not None])


def _scopes_text(scopes: list[tuple[str, ...]]) -> str:
    """'华北' or, when a change moves the scope, 'before / after' ('all regions' for no scope)."""
    return " / ".join(dict.fromkeys(", ".join(s) or "all regions" for s in scopes))
