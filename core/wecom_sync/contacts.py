"""WeCom external-contact events as customer changes: add/edit create or update, deletes are recorded.

Churn signal: when a customer deletes the agent (del_follow_user) the customer keeps every tag and gains
the attributes `wecom_status=lost_by_customer`, `wecom_lost_at` (ISO time) and `wecom_lost_by` (the agent's
userid); `del_external_contact` (the agent deleted the customer) sets `wecom_status=removed_by_agent`.
The deletion is also noted in customer_activity (agent_removed_at/by), which the churn scan reads; re-adding
sets `wecom_status=active`, keeps `wecom_lost_at` as history, records `wecom_readded_at` and clears the
agent-removed signal in customer_activity (same transaction), so the customer leaves the churn list at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from core.alerts.ports import AlertUnitOfWork
from core.ports import UnitOfWork
from core.records import CustomerDraft
from core.tags.assignments import TagChange, TaggingRules, apply_tag
from core.types import Customer, Source
from tagging.policy import AmbiguousTagError, PolicyRefusal, UnknownTagError
from tagging.taxonomy import Taxonomy

log = logging.getLogger(__name__)

CHANNEL_ACTOR = "wecom"
STATUS = "wecom_status"
LOST_AT = "wecom_lost_at"
LOST_BY = "wecom_lost_by"
REMOVED_AT = "wecom_removed_at"
READDED_AT = "wecom_readded_at"
STATE = "wecom_add_state"

ContactChange = Literal["add_external_contact", "edit_external_contact", "del_external_contact", "del_follow_user"]
HANDLED: frozenset[str] = frozenset(
    {"add_external_contact", "edit_external_contact", "del_external_contact", "del_follow_user"}
)


@dataclass(frozen=True, slots=True)
class ContactDetails:
    """What WeCom's externalcontact/get says about a customer (all optional)."""

    name: str = ""
    corp_name: str = ""
    personal: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # agent userid -> their own tags


@dataclass(frozen=True, slots=True)
class ContactOutcome:
    """What an event did: the customer (None when unknown and not creatable) and any channel tag."""

    customer: Customer | None
    created: bool = False
    channel_tag: TagChange | None = None
    problem: str | None = None


async def find_by_external_id(uow: UnitOfWork, external_user_id: str) -> Customer | None:
    """The customer whose wecom_external_userid is exactly `external_user_id`."""
    for customer in await uow.customers.find_exact(external_user_id):
        if customer.wecom_external_userid == external_user_id:
            return customer
    return None


def _draft(customer: Customer, **changes: object) -> CustomerDraft:
    """The customer as a draft with some fields changed (update() writes every field)."""
    draft = CustomerDraft(
        name=customer.name,
        company=customer.company,
        owner=customer.owner,
        region=customer.region,
        crm_id=customer.crm_id,
        wecom_external_userid=customer.wecom_external_userid,
        contract_end=customer.contract_end,
        attributes=dict(customer.attributes),
    )
    return replace(draft, **changes)  # type: ignore[arg-type]


def _with(attributes: Mapping[str, str], **values: str) -> dict[str, str]:
    return {**attributes, **values}


async def record_contact_event(
    uow: AlertUnitOfWork,
    taxonomy: Taxonomy,
    rules: TaggingRules,
    *,
    change_type: str,
    user_id: str,
    external_user_id: str,
    now: datetime,
    state: str | None = None,
    details: ContactDetails | None = None,
) -> ContactOutcome:
    """Apply one change_external_contact event to the customer it names."""
    if change_type not in HANDLED:
        raise ValueError(f"external-contact change {change_type!r} is not handled; expected one of {sorted(HANDLED)}")
    if not external_user_id.strip():
        raise ValueError("external-contact event without ExternalUserID")
    customer = await find_by_external_id(uow, external_user_id)
    info = details or ContactDetails()
    stamp = now.isoformat()
    if change_type == "add_external_contact":
        return await _added(uow, taxonomy, rules, customer, user_id, external_user_id, state, info, now)
    if customer is None:
        # Edits and deletes of a customer Kebiao never saw: nothing to record against.
        log.info("wecom %s for unknown external contact; ignored", change_type)
        return ContactOutcome(None, problem="unknown customer")
    if change_type == "edit_external_contact":
        changes: dict[str, object] = {}
        if info.name and info.name != customer.name:
            changes["name"] = info.name
        if info.corp_name and info.corp_name != customer.company:
            changes["company"] = info.corp_name
        if not changes:
            return ContactOutcome(customer)
        return ContactOutcome(await uow.customers.update(customer.id, _draft(customer, **changes), now))
    if change_type == "del_follow_user":
        attrs = _with(customer.attributes, **{STATUS: "lost_by_customer", LOST_AT: stamp, LOST_BY: user_id})
        updated = await uow.customers.update(customer.id, _draft(customer, attributes=attrs), now)
        # Same transaction as the attributes: the churn scan's agent-removed signal reads customer_activity.
        await uow.activity.record_agent_removed(customer.id, user_id, now)
        log.info("churn signal: customer %d deleted agent %s", customer.id, user_id)
        return ContactOutcome(updated)
    attrs = _with(customer.attributes, **{STATUS: "removed_by_agent", REMOVED_AT: stamp})
    return ContactOutcome(await uow.customers.update(customer.id, _draft(customer, attributes=attrs), now))


async def _added(
    uow: AlertUnitOfWork,
    taxonomy: Taxonomy,
    rules: TaggingRules,
    customer: Customer | None,
    user_id: str,
    external_user_id: str,
    state: str | None,
    info: ContactDetails,
    now: datetime,
) -> ContactOutcome:
    """Create the customer (or mark it active again) and apply the 渠道活码 channel tag for `state`."""
    extra = {STATUS: "active"} | ({STATE: state} if state else {})
    created = customer is None
    if customer is None:
        draft = CustomerDraft(
            name=info.name or external_user_id,
            company=info.corp_name,
            owner=user_id,
            wecom_external_userid=external_user_id,
            attributes=extra,
        )
        customer = await uow.customers.add(draft, now)
    else:
        if customer.attributes.get(STATUS) in ("lost_by_customer", "removed_by_agent"):
            extra[READDED_AT] = now.isoformat()
        changes: dict[str, object] = {"attributes": _with(customer.attributes, **extra)}
        if not customer.owner:
            changes["owner"] = user_id
        if info.name and customer.name == external_user_id:
            changes["name"] = info.name
        customer = await uow.customers.update(customer.id, _draft(customer, **changes), now)
        # The churn scan reads customer_activity: a customer who is back is no longer at risk.
        await uow.activity.record_agent_readded(customer.id, now)
    if not state:
        return ContactOutcome(customer, created)
    tag_name = taxonomy.channels.get(state)
    if tag_name is None:
        log.info("wecom add event state has no channel tag mapping; no channel tag applied")
        return ContactOutcome(customer, created)
    try:
        change = await apply_tag(
            uow,
            taxonomy,
            rules,
            customer.id,
            tag_name,
            actor=user_id or CHANNEL_ACTOR,
            source=Source.CHANNEL,
            now=now,
            evidence={"state": state, "userid": user_id},
        )
    except (UnknownTagError, AmbiguousTagError, PolicyRefusal) as exc:
        log.warning("channel tag %r for state could not be applied: %s", tag_name, exc)
        return ContactOutcome(customer, created, problem=str(exc))
    return ContactOutcome(customer, created, change)
