"""The resident's answer to a handler's question (询问居民 → 居民补充).

A question that reached the resident (its outbox message was sent) is open for
ANSWER_WINDOW_HOURS. The resident's next message in that conversation — typed text, or a
photo they uploaded in it (already cleaned of EXIF: bot/uploads.py) — is the answer: it is
attached to the ticket as a 居民补充 event and never reaches the assistant's NLU, which would
read it as a new complaint. A button click is not an answer (the resident is in a form).
Two open questions on two tickets: the answer goes to the most recently asked one, the reply
names that ticket and repeats the other question. The same message again within
RETRY_MINUTES (a client's retry) gets the same reply and is not attached twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.model import ANSWER
from bot.services.tickets import retry_on_stale
from bot.storage import questions as qs
from bot.storage.repository import StaleTicket
from bot.storage.uow import SqlAlchemyUnitOfWork
from bot.text import mask_personal_data, shorten
from bot.uploads import own_photo_name, photo_belongs_to

ANSWER_WINDOW_ENV = "QC_ANSWER_WINDOW_HOURS"
ANSWER_WINDOW_HOURS = 72.0
RETRY_MINUTES = 30
PHOTO_REASON = "（照片）"
_PHOTO = re.compile(r"^/inform(\{.*\})$", re.S)


def question_message(number: str, question: str) -> str:
    """What the resident reads (actions/followup.py utters it when the outbox delivers)."""
    return f"关于您反映的工单 {number}，工作人员想请您补充：{question}\n请直接回复文字，或发送照片。"


def answer_window() -> timedelta:
    try:
        hours = float(os.environ.get(ANSWER_WINDOW_ENV) or ANSWER_WINDOW_HOURS)
    except ValueError:
        hours = ANSWER_WINDOW_HOURS
    return timedelta(hours=max(hours, 0.0))


@dataclass(frozen=True)
class Answer:
    text: str  # "" for a photo
    photo: str | None  # the photo's reference (/widget/photo/<name>)


def answer_in(text: str, conversation: str, channel_photo: bool = False) -> Answer | None:
    """What of a message can answer a question: typed text, or the payload of a photo
    uploaded in this conversation; None for an empty message or a button's payload.
    channel_photo: the channel made the payload itself from a download (WeChat, where a
    typed "/" never reaches here as one), so any of our photo references is the resident's."""
    stripped = (text or "").replace("\u200b", "").strip()
    if not stripped:
        return None
    if not stripped.startswith("/"):
        return Answer(stripped, None)
    m = _PHOTO.match(stripped)
    if m is None:
        return None
    try:
        entities = json.loads(m.group(1))
    except ValueError:
        return None
    ref = entities.get("photo") if isinstance(entities, dict) and len(entities) == 1 else None
    if isinstance(ref, str) and (photo_belongs_to(ref, conversation) if not channel_photo else own_photo_name(ref)):
        return Answer("", ref)
    return None


@dataclass(frozen=True)
class Attached:
    number: str  # the ticket the answer went to
    duplicate: bool  # the same message again: nothing attached this time
    others: tuple[tuple[str, str], ...]  # (ticket number, question) still waiting for an answer

    @property
    def reply(self) -> str:
        text = f"已收到，您的回复已补充到工单 {self.number}，工作人员会继续办理。"
        for number, question in self.others:
            text += f"\n工单 {number} 的工作人员也在等您回复：{shorten(question, 120)}\n请再发一条消息回复。"
        return text


def message_key(sender_id: str, text: str) -> str:
    return hashlib.sha256(f"{sender_id}\n{text.strip()}".encode()).hexdigest()


def take_answer(uow: SqlAlchemyUnitOfWork, sender_id: str, text: str, now: datetime,
                window: timedelta | None = None, channel_photo: bool = False) -> Attached | None:
    """Attach the message to the sender's open question, as one transaction; None when it
    answers nothing (the assistant handles it as usual)."""
    answer = answer_in(text, sender_id, channel_photo)
    if answer is None:
        return None
    key = message_key(sender_id, text)
    since = now - (window if window is not None else answer_window())

    def once() -> Attached | None:
        with uow:
            conn = uow.connection()
            again = qs.answered_with(conn, sender_id, key, now - timedelta(minutes=RETRY_MINUTES))
            waiting = qs.open_for(conn, sender_id, since)
            if again is not None:
                return Attached(_number(uow, again.ticket_id), True, _others(uow, waiting))
            if not waiting:
                return None
            question = waiting[0]
            if not qs.mark_answered(conn, question.id, key, now):
                raise StaleTicket(question.ticket_id)  # answered meanwhile (a concurrent copy): look again
            ticket = uow.tickets.get(question.ticket_id)
            assert ticket is not None
            data = {"question_id": question.id, **({"photo": answer.photo} if answer.photo else {})}
            # stored masked, like the transcripts: the log is append-only
            reason = mask_personal_data(answer.text) if answer.text else PHOTO_REASON
            ticket.apply(ANSWER, f"resident:{sender_id}", reason, now, **data)
            uow.tickets.save_events(ticket)
            others = _others(uow, waiting[1:])
            uow.commit()
            return Attached(ticket.number, False, others)

    return retry_on_stale(once)


def _number(uow: SqlAlchemyUnitOfWork, ticket_id: int) -> str:
    ticket = uow.tickets.get(ticket_id)
    assert ticket is not None
    return ticket.number


def _others(uow: SqlAlchemyUnitOfWork, waiting: list[qs.Question]) -> tuple[tuple[str, str], ...]:
    return tuple((_number(uow, q.ticket_id), q.question) for q in waiting)
