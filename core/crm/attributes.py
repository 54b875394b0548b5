"""Basic attributes from the CRM (pure): the CRM is master of the configured attributes of a customer."""

from __future__ import annotations

from collections.abc import Mapping

REGION = "region"  # the attribute kept in the customer's own region column (alert routing, rules' `region`)


def merged_attributes(
    attributes: Mapping[str, str], region: str, incoming: Mapping[str, str]
) -> tuple[dict[str, str], str] | None:
    """The customer's attributes and region after the CRM's values; None when nothing changes.

    A non-empty CRM value sets the attribute, an empty one removes it; an empty CRM region keeps the region.
    """
    merged = dict(attributes)
    new_region = region
    for name, raw in incoming.items():
        value = raw.strip()
        if name == REGION:
            new_region = value or region
        elif value:
            merged[name] = value
        else:
            merged.pop(name, None)
    if merged == dict(attributes) and new_region == region:
        return None
    return merged, new_region
