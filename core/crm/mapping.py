"""What syncs (pure): CRM values to tags per `sync: crm` dimension, and Kebiao tags the CRM may receive."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from core.crm.port import CrmRecord
from core.types import Assignment
from tagging.normaliser import name_key
from tagging.policy import TEMPORARY_TTL_DAYS
from tagging.taxonomy import Dimension, SyncMode, TagDef, Taxonomy, Visibility


@dataclass(frozen=True, slots=True)
class SyncRules:
    """The synced dimensions of a taxonomy and the write-back filters."""

    crm: tuple[Dimension, ...]
    kebiao: tuple[Dimension, ...]
    write_managers_only: bool = False
    _tags: Mapping[str, tuple[Dimension, TagDef]] = field(default_factory=dict)

    @classmethod
    def of(cls, taxonomy: Taxonomy, write_managers_only: bool = False) -> SyncRules:
        crm = tuple(d for d in taxonomy.dimensions if d.sync is SyncMode.CRM)
        kebiao = tuple(d for d in taxonomy.dimensions if d.sync is SyncMode.KEBIAO)
        tags = {name_key(t.name): (d, t) for d in (*crm, *kebiao) for t in d.iter_tags()}
        return cls(crm, kebiao, write_managers_only, tags)

    @property
    def fields(self) -> tuple[str, ...]:
        """Every CRM field the taxonomy maps, in a stable order."""
        return tuple(sorted({f for d in self.crm for f in (*d.crm_fields, *d.crm_rules)}))

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(d.key for d in (*self.crm, *self.kebiao))

    def resolve(self, crm_tag: str) -> tuple[Dimension, TagDef] | None:
        """The synced dimension and tag a CRM tag name stands for (None: not a synced tag)."""
        return self._tags.get(_key(crm_tag))

    def writable(self, dimension: Dimension, tag: TagDef) -> bool:
        """Whether a Kebiao tag may be written to the CRM: not a session tag, not managers-only unless allowed."""
        if tag.ttl_days is not None and tag.ttl_days <= TEMPORARY_TTL_DAYS:
            return False  # session tags (今日已联系) lapse within a day
        return self.write_managers_only or dimension.visibility is not Visibility.MANAGERS


@lru_cache(maxsize=4096)
def _key(name: str) -> str:
    """name_key, remembered: a sync resolves the same few tag names thousands of times."""
    return name_key(name)


def crm_values(rules: SyncRules, record: CrmRecord) -> dict[str, tuple[str, ...]]:
    """Per synced dimension, the tags the CRM record holds (its tags, plus mapped fields for `sync: crm`)."""
    out: dict[str, list[str]] = {d.key: [] for d in (*rules.crm, *rules.kebiao)}
    for raw in record.tags:
        found = rules.resolve(raw)
        if found is not None and found[1].name not in out[found[0].key]:
            out[found[0].key].append(found[1].name)
    for dim in rules.crm:
        for field_name, values in dim.crm_fields.items():
            tag = values.get(str(record.fields.get(field_name, "")).strip())
            if tag is not None and tag not in out[dim.key]:
                out[dim.key].append(tag)
        for field_name, field_rules in dim.crm_rules.items():
            raw = str(record.fields.get(field_name, ""))
            out[dim.key] += [r.tag for r in field_rules if r.tag not in out[dim.key] and r.matches(raw)]
        if dim.exclusive:
            out[dim.key] = out[dim.key][:1]
    return {k: tuple(sorted(v)) for k, v in out.items()}


def kebiao_values(rules: SyncRules, active: Iterable[Assignment]) -> dict[str, tuple[str, ...]]:
    """Per `sync: kebiao` dimension, the held tags the CRM may receive."""
    out: dict[str, list[str]] = {d.key: [] for d in rules.kebiao}
    for row in active:
        found = rules.resolve(row.tag)
        if found is None or found[0].key != row.dimension or row.dimension not in out:
            continue
        if rules.writable(*found):
            out[row.dimension].append(found[1].name)
    return {k: tuple(sorted(v)) for k, v in out.items()}


def held_values(dimension: str, active: Sequence[Assignment]) -> tuple[str, ...]:
    return tuple(sorted(a.tag for a in active if a.dimension == dimension))
