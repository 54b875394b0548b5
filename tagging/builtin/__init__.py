"""Built-in taxonomy (default.yaml) and the industry templates that extend it (templates/*.yaml)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from tagging.loader import Problem, TaxonomyError, load_taxonomy_text, merge_taxonomies
from tagging.taxonomy import Taxonomy

TEMPLATES: tuple[str, ...] = ("saas", "consulting", "retail", "manufacturing", "education", "finance")
TEMPLATE_TITLES: dict[str, str] = {
    "saas": "SaaS/科技",
    "consulting": "咨询服务",
    "retail": "零售与电商",
    "manufacturing": "B2B制造",
    "education": "教育",
    "finance": "金融",
}


def load_builtin(template: str | None = None) -> Taxonomy:
    """The built-in default taxonomy, with industry `template` (one of TEMPLATES) merged over it."""
    if template is not None and template not in TEMPLATES:
        reason = f"unknown template {template!r}; choose one of: {', '.join(TEMPLATES)}"
        raise TaxonomyError([Problem("<builtin>", "", reason)])
    return _load(template)


@lru_cache(maxsize=len(TEMPLATES) + 1)
def _load(template: str | None) -> Taxonomy:
    base = _read("default.yaml")
    if template is None:
        return base
    name = f"templates/{template}.yaml"
    return merge_taxonomies(base, _read(name), source=f"builtin:default.yaml + builtin:{name}")


def _read(name: str) -> Taxonomy:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return load_taxonomy_text(text, source=f"builtin:{name}", fmt="yaml")


def initial_taxonomy(path: str | None) -> Taxonomy:
    """The taxonomy a first start loads: the file at `path` (KEBIAO_TAXONOMY) when set, else the built-in one."""
    from tagging.loader import load_taxonomy_file

    return load_taxonomy_file(path) if path else load_builtin()
