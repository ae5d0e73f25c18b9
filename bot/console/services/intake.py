"""来电登记: a dispatcher files a ticket for a phone caller. The routing explainer's proposal
(category, place, route) is shaped here for the form; the operator's choice is what is
filed, and where it differs from the proposal the review inbox learns the correction.

The caller has no chat conversation: the report's sender is "phone:<form token>" (no
personal data in sender ids, actors or outbox rows), its channel PHONE_CHANNEL, and the
caller later asks on any channel by ticket number + the last four digits of the phone
(bot/services/tickets.ticket_status)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.console.names import category_label, street_label
from bot.console.services.access import ConsoleError, Principal
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.model import DISPATCH_CENTER, ComplaintDraft, Route
from bot.reference.gazetteer import default_gazetteer
from bot.reference.locations import NONE, RESOLVED, UNRESOLVED, Resolution
from bot.reference.routing import default_catalogue, default_router
from bot.services.tickets import FilingResult, IdempotencyConflict, file_complaint
from bot.text import find_phone, valid_phone

PHONE_CHANNEL = "phone"  # ticket_reports.channel of a 来电登记 ticket (shown as 电话)
INTAKE_ROLES = ("dispatcher", "admin")
PROPOSAL_ROLES = (*INTAKE_ROLES, "agent")  # 坐席 file for a chat resident (bot/console/services/handoff_filing.py)
MAX_DESCRIPTION = 2000
MAX_PLACE = 200
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


@dataclass(frozen=True)
class Call:
    """The operator's form, checked."""

    description: str
    place: str
    phone: str
    confidential: bool
    category: str
    street: str | None
    community: str | None
    proposed_category: str | None
    proposed_street: str | None
    token: str


def category_choices() -> tuple[tuple[str, str], ...]:
    """Every category of the routing catalogue (「其他」 too: it goes to the dispatch centre)."""
    return tuple((code, rule.name) for code, rule in default_catalogue().categories.items())


def _text(form: Mapping[str, Any], name: str, limit: int, what: str) -> str:
    value = " ".join(str(form.get(name) or "").split())
    if len(value) > limit:
        raise ConsoleError(f"{what}过长（最多{limit}字）", 400)
    return value


def _street(code: str) -> str | None:
    place = default_gazetteer().get(code) if code else None
    return place.code if place is not None and place.level == "street" else None


def read_call(form: Mapping[str, Any], phone_required: bool = True) -> Call:
    """The form as a Call; ConsoleError (400, in words the operator reads) when it is not one.
    A chat resident's phone is optional (phone_required False: "" when none is given)."""
    token = str(form.get("form_token") or "")
    if not _TOKEN.fullmatch(token):
        raise ConsoleError("表单已失效，请刷新页面后重新填写。", 400)
    description = _text(form, "description", MAX_DESCRIPTION, "来电内容")
    if not description:
        raise ConsoleError("请填写来电人反映的问题。", 400)
    place = _text(form, "place", MAX_PLACE, "地点")
    if not place:
        raise ConsoleError("请填写问题发生的地点。", 400)
    raw_phone = _text(form, "phone", 32, "联系电话")
    phone = find_phone(raw_phone) if raw_phone else None
    if raw_phone or phone_required:
        if not phone or not valid_phone(phone) or re.sub(r"[\d\s\-+]", "", raw_phone):
            raise ConsoleError("请填写正确的联系电话：11 位手机号，或带区号的固定电话（如 0471-6925678）。", 400)
    categories = dict(category_choices())
    category = str(form.get("category") or "")
    if category not in categories:
        raise ConsoleError("请选择诉求类别。", 400)
    raw_street = str(form.get("street") or "")
    street = _street(raw_street)
    if raw_street and street is None:
        raise ConsoleError("请选择正确的街道。", 400)
    community = None
    place_row = default_gazetteer().get(str(form.get("community") or ""))
    if street and place_row is not None and place_row.level == "community" and place_row.street_code == street:
        community = place_row.code  # the proposal's community, while its street is still the chosen one
    proposed = str(form.get("proposed_category") or "")
    return Call(
        description=description,
        place=place,
        phone=phone or "",
        confidential=form.get("confidential") in ("1", "on"),
        category=category,
        street=street,
        community=community,
        proposed_category=proposed if proposed in categories else None,
        proposed_street=_street(str(form.get("proposed_street") or "")),
        token=token,
    )


def route_of(call: Call) -> Route:
    """The route the router gives the chosen category and place (no street: the dispatch centre)."""
    g = default_gazetteer()
    if call.street:
        street = g.get(call.street)
        assert street is not None
        resolution = Resolution(RESOLVED, place=g.get(call.community) or street, mention_text=call.place,
                                district_code=street.district_code, street_code=street.code,
                                community_code=call.community)
    else:
        resolution = Resolution(UNRESOLVED if call.place else NONE, mention_text=call.place)
    return default_router().route(call.category, resolution, call.description)


def draft_of(call: Call, p: Principal) -> ComplaintDraft:
    key = f"{PHONE_CHANNEL}:{call.token}"
    return ComplaintDraft(
        sender_id=key,
        channel=PHONE_CHANNEL,
        category=call.category,
        description=call.description,
        location_text=call.place,
        photo=None,
        phone=call.phone,
        confidential=call.confidential,
        idempotency_key=key,  # the form's token: a second submit of the same form files nothing
        taken_by=p.actor,
    )


def file_call(uow: ConsoleUnitOfWork, p: Principal, call: Call, now: datetime) -> FilingResult:
    if p.role not in INTAKE_ROLES:
        raise ConsoleError("只有派单中心可以登记来电", 403)
    try:
        result = file_complaint(uow, draft_of(call, p), route_of(call), now)
    except IdempotencyConflict:
        raise ConsoleError("表单已失效，请刷新页面后重新填写。", 400) from None
    if not result.replay:
        collect_corrections(uow, call, result.ticket_id, now)
    return result


def collect_corrections(uow: ConsoleUnitOfWork, call: Call, ticket_id: int, now: datetime,
                        channel: str = PHONE_CHANNEL, chosen_by: str = "operator") -> None:
    """The operator (or 坐席) chose another category or street than the explainer proposed: the
    review inbox gets the resident's words (masked when stored) with the worker's answer."""
    from bot.retraining.inbox import Sample, record

    samples = []
    if call.proposed_category and call.proposed_category != call.category:
        samples.append(Sample("ticket_category", call.description, f"ticket_category:{ticket_id}:{channel}",
                              predicted_intent=call.proposed_category, ticket_id=ticket_id,
                              correction={"intent": call.category, "chosen_by": chosen_by}))
    if call.proposed_street and call.street != call.proposed_street:
        samples.append(Sample("ticket_location", f"{call.place} {call.description}",
                              f"ticket_location:{ticket_id}:{channel}",
                              predicted_intent=call.category, ticket_id=ticket_id,
                              correction={"street_code": call.street, "was": call.proposed_street,
                                          "chosen_by": chosen_by}))
    if not samples:
        return
    with uow:
        for sample in samples:
            record(uow.connection(), sample, now)
        uow.commit()


def proposal(explained: Mapping[str, Any]) -> dict[str, Any]:
    """What the form shows of bot.nlu.explain.explain()'s answer (names beside the codes)."""
    g = default_gazetteer()
    catalogue = default_catalogue()
    category = explained.get("category")
    route = explained.get("route") or {}
    street = explained.get("street_code")
    community = explained.get("community_code")
    lead = route.get("lead")
    return {
        "available": True,
        "category": category,
        "category_name": category_label(category) if category else "",
        "confidence": explained.get("confidence"),
        "location_status": explained.get("location_status"),
        "places": [loc.get("text") for loc in explained.get("locations") or []],
        "street": street,
        "street_name": street_label(street),
        "community": community if community and g.get(community) is not None else None,
        "community_name": g.name_of(community) if community else "",
        "lead": lead,
        "lead_name": catalogue.unit_name(lead) if lead else "",
        "manual": lead == DISPATCH_CENTER,
        "co_names": [catalogue.unit_name(c, g) for c in route.get("co") or []],
        "reason": route.get("reason") or "",
    }


UNAVAILABLE = {"available": False, "message": "自动建议暂不可用（模型服务未连接），请手动选择类别和街道。"}
