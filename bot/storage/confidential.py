"""保密 in exports: a ticket is confidential when any of its reporters asked for it
(ticket_reports.confidential). A table export (the admins' CSV, bot/console/stats.py) leaves
such a ticket's rows out; when an admin gives a reason they are included, and still never
carry its phone numbers: the reporter's phone column is withheld and every text of a row
that belongs to the ticket (descriptions, addresses, event reasons, notice payloads) has its
phone and ID numbers masked."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from bot.storage.tables import ticket_reports

WITHHELD = "[保密]"


def confidential_ticket_ids(conn: Connection) -> frozenset[int]:
    rows = conn.execute(select(ticket_reports.c.ticket_id).where(ticket_reports.c.confidential.is_(True)).distinct())
    return frozenset(int(i) for i in rows.scalars())


def ticket_of(table: str, row: Mapping[str, Any]) -> Any:
    """The ticket a row of `table` belongs to (None: not a ticket's row)."""
    if table == "tickets":
        return row.get("id")
    return row.get("ticket_id")


def redact_row(table: str, row: Mapping[str, Any], confidential: frozenset[int],
               mask: Callable[[str], str]) -> dict[str, Any]:
    """The row as an export may show it."""
    out = dict(row)
    if ticket_of(table, row) not in confidential:
        return out
    for name, value in row.items():
        if name == "phone" and value is not None:
            out[name] = WITHHELD
        elif isinstance(value, str):
            out[name] = mask(value)
        elif isinstance(value, (dict, list)):
            out[name] = _mask_json(value, mask)
    return out


def _mask_json(value: Any, mask: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: WITHHELD if k == "phone" and v else _mask_json(v, mask) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_json(v, mask) for v in value]
    return value
