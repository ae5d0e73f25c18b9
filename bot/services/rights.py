"""A resident's rights over their personal data (个人信息保护法): to see what is held about
them (查看/导出我的信息) and to have it erased (删除我的信息).

Who the resident is comes from the channel, never from what they type: in the chat, the
conversation's sender id (REST "rest:<s>", the WeChat openid, the widget's session); in the
console, a phone caller's reports (来电登记, channel 电话) found by the caller's full number,
by an admin who gives a reason (bot/console/services/rights.py). A ticket number or a phone
number typed in the chat opens nothing.

Erasure reuses the retention job's anonymising (bot/storage/retention.py), in one transaction:
- a ticket only this resident reported: an open one is withdrawn first (撤单, with a note the
  units are sent through the outbox like any ticket news), then anonymised exactly as the
  retention job anonymises a closed ticket;
- a ticket others reported too: only this resident's reports are anonymised (same pseudonyms,
  photos, notices to them); an open one gets a 信息删除 note for its units and goes on;
- the phone an unfinished complaint form held for the conversation is deleted, and so are
  its messages with a person (转人工, handoff_messages, kept as typed), and the WeChat
  channel's answers kept for retries (wechat_inbound.reply: they quote the resident).
Photo files go after the commit. The conversation's transcript is deleted by the tracker
store when the erasing action's turn is saved (bot/rasa_ext/erasure.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.channels.wechat import store as wechat_store
from bot.domain.model import CATEGORIES, REPORTER_ERASED, WITHDRAW, TicketState
from bot.services import retention
from bot.services.tickets import resident_of, retry_on_stale
from bot.storage import pending_phones
from bot.storage import retention as retention_store
from bot.storage import rights as store
from bot.storage.uow import SqlAlchemyUnitOfWork
from bot.text import mask_phone

WITHDRAW_NOTE = "居民要求删除个人信息并撤回诉求，工单关闭；其电话、照片等个人信息已清除，请勿再联系。"
ERASED_NOTE = "一位反映人要求删除个人信息，其电话、照片等已清除；其他居民的诉求照常办理。"


@dataclass(frozen=True)
class HeldReport:
    """One report as the resident is shown it."""

    number: str
    category_name: str
    state: str
    created_at: datetime
    place: str
    description: str  # what they said (kept whole: it is theirs; phone/ID numbers were masked in the chat)
    phone: str  # masked (mask_phone), "" when none
    photo: bool
    confidential: bool


@dataclass(frozen=True)
class Held:
    reports: list[HeldReport]
    held_phone: str  # masked number an unfinished complaint form holds, "" when none
    handoff_messages: int = 0  # the live chat's messages with a person (转人工), both ways

    @property
    def tickets(self) -> int:
        return len({r.number for r in self.reports})

    @property
    def open_tickets(self) -> int:
        return len({r.number for r in self.reports if TicketState(r.state).is_open})


@dataclass
class Erased:
    tickets: int = 0  # tickets whose reports of this resident were anonymised
    closed: int = 0  # open tickets withdrawn (撤单): the resident was their only reporter
    noted: int = 0  # open tickets others reported too, left open with a note (信息删除)
    reports: int = 0
    phones: int = 0
    photos_deleted: int = 0
    held_phone: int = 0
    handoff_messages: int = 0


def _held(rows: list[Any], held_phone: str | None, handoff_messages: int = 0) -> Held:
    return Held(
        reports=[HeldReport(
            number=r.number, category_name=CATEGORIES.get(r.category, r.category), state=r.state,
            created_at=r.ticket_created_at, place=r.location_text, description=r.description,
            phone=mask_phone(r.phone), photo=bool(r.photo), confidential=bool(r.confidential),
        ) for r in rows],
        held_phone=mask_phone(held_phone),
        handoff_messages=handoff_messages,
    )


def held_for_sender(uow: SqlAlchemyUnitOfWork, sender_id: str, now: datetime) -> Held:
    """What the ticket store holds about this chat identity."""
    with uow:
        conn = uow.connection()
        return _held(store.reports(conn, store.of_sender(sender_id)),
                     pending_phones.held_phone(conn, sender_id, now), store.handoff_message_count(conn, sender_id))


def held_for_caller(uow: SqlAlchemyUnitOfWork, phone: str) -> Held:
    """What the ticket store holds about a phone caller (their 来电登记 reports)."""
    with uow:
        return _held(store.reports(uow.connection(), store.of_caller(phone)), None)


def erase_for_sender(uow: SqlAlchemyUnitOfWork, sender_id: str, upload_dir: Path, now: datetime) -> Erased:
    # the timeline is append-only: its actor must not be the identity being erased
    def forget(conn: Any) -> tuple[int, int]:
        wechat_store.forget_resident(conn, sender_id)  # a WeChat sender id is the openid; others match nothing
        return pending_phones.forget_phone(conn, sender_id), store.erase_handoffs(conn, sender_id)

    return _erase(uow, store.of_sender(sender_id), "resident:erased", upload_dir, now, forget=forget)


def erase_for_caller(uow: SqlAlchemyUnitOfWork, phone: str, actor: str, upload_dir: Path, now: datetime,
                     record: Callable[[Any], None] | None = None) -> Erased:
    """`record(conn)`: written in the erasure's transaction (the console's log of who erased)."""
    def forget(conn: Any) -> tuple[int, int]:
        if record is not None:
            record(conn)
        return 0, 0

    return _erase(uow, store.of_caller(phone), actor, upload_dir, now, forget=forget)


def _erase(uow: SqlAlchemyUnitOfWork, which: Any, actor: str, upload_dir: Path, now: datetime,
           forget: Callable[[Any], tuple[int, int]]) -> Erased:
    from bot.uploads import own_photo_name

    def once() -> tuple[Erased, list[retention_store.Anonymised]]:
        result, done = Erased(), []
        with uow:
            conn = uow.connection()
            mine: dict[int, list[int]] = {}
            for r in store.reports(conn, which):
                mine.setdefault(r.ticket_id, []).append(r.id)
            for ticket_id, report_ids in mine.items():
                ticket = uow.tickets.get(ticket_id)
                assert ticket is not None
                alone = store.report_ids_of_ticket(conn, ticket_id) == report_ids
                if ticket.is_open:
                    ticket.apply(WITHDRAW if alone else REPORTER_ERASED, actor,
                                 WITHDRAW_NOTE if alone else ERASED_NOTE, now)
                    uow.tickets.save_events(ticket)  # StaleTicket: the whole erasure again
                    result.closed += alone
                    result.noted += not alone
                if alone:
                    anonymised = retention_store.anonymise_ticket(conn, ticket_id, now, retention.mask_text,
                                                                  own_photo_name, resident_of)
                else:
                    anonymised = retention_store.anonymise_reports(conn, ticket_id, report_ids, retention.mask_text,
                                                                   own_photo_name, resident_of)
                if anonymised is None:  # anonymised before (retention) while still naming them: no
                    continue
                done.append(anonymised)
                result.tickets += 1
                result.reports += anonymised.reports
                result.phones += anonymised.phones
            result.held_phone, result.handoff_messages = forget(conn)
            uow.commit()
        return result, done

    result, done = retry_on_stale(once)
    result.photos_deleted = sum(retention.remove_files(upload_dir, d) for d in done)
    return result
