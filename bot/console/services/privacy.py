"""Who sees a resident's personal data in the console, and the record of who saw it.

A report's phone number and description are shown masked (bot.text); a user whose role may
see personal data (QC_PHONE_ROLES) reveals one with a POST, and each reveal is a row of the
personal-data view log (personal_data_views, append-only); so is a refused one (denied). A 保密 ticket's phone number and
the resident's name are never shown to a unit (worker, department), whatever the setting:
only the dispatch centre and admins may reveal them. CSV exports leave 保密 tickets out unless
an admin gives a reason; every export is logged, with that reason. A phone caller (来电登记)
has no chat identity: an admin looks up and erases their data by their full number, with a
reason, each logged with the number masked."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from bot.console import stats
from bot.console.repository import ConsoleRepository
from bot.console.services.access import (
    CONFIDENTIAL_ROLES,
    ConsoleError,
    NotFound,
    Principal,
    get_visible,
    may_see_phone,
)
from bot.console.uow import ConsoleUnitOfWork
from bot.services import rights
from bot.text import find_phone, mask_personal_data, mask_phone, valid_phone

REVEALABLE = ("phone", "description")
MAX_REASON = 500
LOG_PAGE_SIZE = 50


class NotPermitted(Exception):
    """This role may not see that personal data (→ 403; the attempt is logged, denied)."""


def may_reveal(role: str, confidential: bool, phone_roles: frozenset[str]) -> bool:
    return may_see_phone(role, confidential, phone_roles)


def hides_resident(role: str, confidential: bool) -> bool:
    """A unit reading a 保密 ticket: no phone at all, names masked in the text too."""
    return confidential and role not in CONFIDENTIAL_ROLES


@dataclass(frozen=True)
class ShownReport:
    """A report's personal fields as this user's page shows them."""

    phone: str  # "" when there is none or it is withheld
    phone_masked: bool  # a reveal button is worth showing
    description: str
    description_masked: bool
    may_reveal: bool


def shown_report(row: Any, role: str, phone_roles: frozenset[str], revealed: frozenset[str] = frozenset()) -> ShownReport:
    allowed = may_reveal(role, bool(row.confidential), phone_roles)
    hidden = hides_resident(role, bool(row.confidential))
    if "phone" in revealed and allowed:
        phone = row.phone or ""
    else:
        phone = "" if hidden else mask_phone(row.phone)
    if "description" in revealed and allowed:
        description = row.description
    else:
        description = mask_personal_data(row.description, public=hidden)
    return ShownReport(
        phone=phone,
        phone_masked=bool(row.phone) and phone != row.phone,
        description=description,
        description_masked=description != row.description,
        may_reveal=allowed,
    )


def masked_description(text: str, role: str, confidential: bool) -> str:
    """A ticket's description on the queue and ticket pages (never revealed there: the
    reports below it are)."""
    return mask_personal_data(text, public=hides_resident(role, confidential))


def _row(p: Principal, now: datetime, field: str, **values: Any) -> dict[str, Any]:
    return {"at": now, "user_id": p.id, "username": p.username, "display_name": p.display_name, "role": p.role,
            "field": field, **values}


def _log(uow: ConsoleUnitOfWork, p: Principal, now: datetime, field: str, **values: Any) -> None:
    uow.console.log_view(_row(p, now, field, **values))


def reveal(uow: ConsoleUnitOfWork, p: Principal, ticket_id: int, report_id: int, field: str,
           phone_roles: frozenset[str], now: datetime) -> None:
    """Record that `p` views a report's `field` unmasked; NotFound for a ticket it may not see
    (or a report or phone that is not there), NotPermitted for a role that may not see it."""
    if field not in REVEALABLE:
        raise NotFound(field)
    with uow:
        get_visible(uow, p, ticket_id, now)
        row = next((r for r in uow.console.reports(ticket_id) if r.id == report_id), None)
        if row is None or (field == "phone" and not row.phone):
            raise NotFound(report_id)
        allowed = may_reveal(p.role, bool(row.confidential), phone_roles)
        # a refused attempt is logged too (who tried to see what), then refused
        _log(uow, p, now, field, ticket_id=ticket_id, report_id=report_id, denied=not allowed)
        uow.commit()
    if not allowed:
        raise NotPermitted(p.role)


def export_reason(raw: str, missing: str = "导出保密工单须填写理由。") -> str:
    """The reason an admin gives for exporting 保密 tickets (or for a caller's data): required,
    trimmed, bounded."""
    reason = " ".join(raw.split())
    if not reason:
        raise ConsoleError(missing, 400)
    if len(reason) > MAX_REASON:
        raise ConsoleError(f"理由不能超过 {MAX_REASON} 字。", 400)
    return reason


# --- a phone caller's data (来电登记 reports), for admins, with a reason ------------------

def caller_phone(raw: str) -> str:
    """The caller's full number as 来电登记 stores it (services/intake.py): a mobile, or a
    landline with its area code."""
    phone = find_phone(raw) if raw and len(raw) <= 32 else None
    if not phone or not valid_phone(phone) or re.sub(r"[\d\s\-+]", "", raw):
        raise ConsoleError("请输入来电人完整的电话号码：11 位手机号，或带区号的固定电话（如 0471-6925678）。", 400)
    return phone


def caller_data(uow: ConsoleUnitOfWork, p: Principal, phone: str, reason: str, now: datetime) -> rights.Held:
    """What the ticket store holds about a phone caller; the look-up is logged (caller_export,
    the number masked, the reason) before anything is shown."""
    if not p.is_admin:
        raise NotPermitted(p.role)
    held = rights.held_for_caller(uow, phone)
    with uow:
        _log(uow, p, now, "caller_export", caller=mask_phone(phone), reason=reason)
        uow.commit()
    return held


def erase_caller(uow: ConsoleUnitOfWork, p: Principal, phone: str, reason: str, upload_dir: Path,
                 now: datetime) -> rights.Erased:
    """Erase a phone caller's data as a resident's own erasure does (bot/services/rights.py);
    the log row (caller_erasure, the number masked, the reason) is in the same transaction."""
    if not p.is_admin:
        raise NotPermitted(p.role)

    def record(conn: Connection) -> None:
        ConsoleRepository(conn).log_view(_row(p, now, "caller_erasure", caller=mask_phone(phone), reason=reason))

    return rights.erase_for_caller(uow, phone, p.actor, upload_dir, now, record=record)


def export(uow: ConsoleUnitOfWork, p: Principal, table: str, reason: str | None, now: datetime,
           ticket_ids: Iterable[int] | None = None) -> bytes:
    """A table as CSV (stats.table_csv), logged; 保密 tickets only with a reason (an admin's).
    KeyError: no such table."""
    if table not in stats.exportable_tables():
        raise KeyError(table)
    if not p.is_admin:
        with uow:
            _log(uow, p, now, "export", export_table=table, reason=reason, denied=True)
            uow.commit()
        raise NotPermitted(p.role)
    with uow:
        _log(uow, p, now, "export", export_table=table, reason=reason)
        body = stats.table_csv(uow.connection(), table, include_confidential=reason is not None,
                               ticket_ids=ticket_ids)
        uow.commit()
    return body


@dataclass
class ViewLogPage:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int


def view_log(uow: ConsoleUnitOfWork, page: int = 1) -> ViewLogPage:
    page = max(1, page)
    with uow:
        total = uow.console.count_view_log()
        rows = uow.console.view_log(LOG_PAGE_SIZE, (page - 1) * LOG_PAGE_SIZE)
    return ViewLogPage(rows, total, page, max(1, -(-total // LOG_PAGE_SIZE)))
