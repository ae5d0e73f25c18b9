"""Use cases of a hand-off to a person (bot/domain/handoff.py), over a unit of work whose
connection the hand-off repository uses. Callers: the actions (a hand-off is requested),
the chat channels (bot/channels/handoff_gate.py: each resident message, and pickups) and
the console (bot/console/handoff.py: the agents).

Everything the resident is told goes through handoff_messages (outgoing), so a notice or
an agent's message is delivered once and in order on whatever channel picks it up."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from bot.domain.handoff import (
    ASKED_QUESTION,
    CLOSE,
    CLOSED_NOTICE,
    FORM_KEPT,
    HAND_BACK,
    HANDED_BACK_NOTICE,
    LEAVE,
    LEFT_NOTICE,
    OFFER,
    QUESTION,
    REASON_LANGUAGE,
    REASONS,
    TAKE,
    TAKEN_NOTICE,
    Handoff,
    HandoffState,
    InvalidHandoffStep,
    ServiceHours,
    offer_notice,
    waiting_notice,
)
from bot.storage.handoff import HandoffRepository
from bot.storage.uow import SqlAlchemyUnitOfWork
from bot.text import mask_personal_data

HOURS_ENV, WAIT_ENV = "QC_HANDOFF_HOURS", "QC_HANDOFF_WAIT_MINUTES"
MAX_AGENT_MESSAGE = 2000
RESIDENT, SYSTEM = "resident", "system"


def hours_from_env() -> ServiceHours:
    return ServiceHours.parse(os.environ.get(HOURS_ENV), os.environ.get(WAIT_ENV))


class AlreadyTaken(Exception):
    """Another agent holds (or held) the conversation."""

    def __init__(self, holder: str | None, state: HandoffState) -> None:
        super().__init__(holder or state.value)
        self.holder = holder
        self.state = state


def _repo(uow: SqlAlchemyUnitOfWork) -> HandoffRepository:
    return HandoffRepository(uow.connection())


# --- the resident's side -------------------------------------------------------------


def request(uow: SqlAlchemyUnitOfWork, sender_id: str, channel: str, reason: str, now: datetime,
            hours: ServiceHours, language: str = "", kept: Mapping[str, object] | None = None,
            first_message: str | None = None) -> tuple[Handoff, str]:
    """Open a hand-off (or find the one already open) and what the resident is told now;
    `kept`: the complaint form's answers, a step (诉求表单) the agent files them from;
    `first_message`: what the resident wrote that the assistant could not read (Mongolian
    script, twice not understood), kept for the person like every later message."""
    if reason not in REASONS:
        raise ValueError(f"unknown hand-off reason {reason!r}")
    language = language or REASON_LANGUAGE.get(reason, "")
    with uow:
        repo = _repo(uow)
        found = repo.open_for(sender_id)
        if found is None:
            try:
                found = repo.open(sender_id, channel, reason, language, now)
                if first_message:
                    masked = mask_personal_data(first_message)
                    repo.add_message(found, RESIDENT, False, masked, now,
                                     typed=first_message if masked != first_message else None)
            except IntegrityError:  # the same conversation asked twice at once: one hand-off
                uow.rollback()
                found = repo.open_for(sender_id)
                assert found is not None
        if kept:
            assert found.id is not None
            repo.event(found.id, FORM_KEPT, RESIDENT, now, json.dumps(dict(kept), ensure_ascii=False, sort_keys=True))
        if found.state is HandoffState.WAITING and not hours.open_at(now):
            found = repo.step(found, OFFER, SYSTEM, now)
            notice = offer_notice(hours, outside_hours=True, language=found.language)
        elif found.state is HandoffState.WAITING:
            notice = waiting_notice(repo.position(found), hours, found.language)
        elif found.state is HandoffState.OFFERED:
            notice = offer_notice(hours, outside_hours=not hours.open_at(now), language=found.language)
        elif found.state is HandoffState.LEFT:
            notice = LEFT_NOTICE
        else:  # taken: the channel keeps the resident's messages for the person; not reached
            notice = TAKEN_NOTICE.format(name="")
        uow.commit()
        return found, notice


def kept_form(h: Handoff) -> dict[str, object]:
    """The latest complaint form answers kept with the hand-off ({} when none)."""
    for e in reversed(h.events):
        if e.kind == FORM_KEPT:
            try:
                value = json.loads(e.note)
            except ValueError:
                return {}
            return value if isinstance(value, dict) else {}
    return {}


def record_question(uow: SqlAlchemyUnitOfWork, sender_id: str, channel: str, text: str, now: datetime) -> int:
    """A question the knowledge base could not answer becomes a 咨询 item in the agents' list
    (a hand-off opened as left: the assistant goes on answering), or joins the conversation's
    open hand-off; its id. An agent answers it in the chat (接入) or files it as a ticket."""
    text = text.strip()[:MAX_AGENT_MESSAGE]
    with uow:
        repo = _repo(uow)
        found = repo.open_for(sender_id)
        if found is None:
            try:
                found = repo.open(sender_id, channel, QUESTION, "", now, HandoffState.LEFT, ASKED_QUESTION)
            except IntegrityError:  # the same conversation at once: one item
                uow.rollback()
                found = repo.open_for(sender_id)
                assert found is not None
        repo.add_message(found, RESIDENT, False, text, now)
        uow.commit()
        assert found.id is not None
        return found.id


@dataclass(frozen=True)
class Gate:
    held: bool  # a person holds the conversation: the assistant must not answer
    replies: list[str]  # to the resident now, in order (already marked delivered)


def _expire(repo: HandoffRepository, h: Handoff, now: datetime, hours: ServiceHours) -> Handoff:
    if hours.timed_out(h, now) or (h.state is HandoffState.WAITING and not hours.open_at(now)):
        h = repo.step(h, OFFER, SYSTEM, now)
        repo.add_message(h, SYSTEM, True, offer_notice(hours, not hours.open_at(now), h.language), now)
    return h


def _claim(repo: HandoffRepository, sender_id: str, now: datetime) -> list[str]:
    return [row.text for row in repo.undelivered(sender_id) if repo.claim(row.id, now)]


def resident_message(uow: SqlAlchemyUnitOfWork, sender_id: str, text: str, now: datetime,
                     hours: ServiceHours) -> Gate:
    """A resident's message arrives: kept for the person while a hand-off holds the
    conversation (in the same transaction as the state it was read in), else for the
    assistant; with whatever was waiting to be delivered."""
    with uow:
        repo = _repo(uow)
        h = repo.open_for(sender_id)
        held = False
        if h is not None and h.held:
            h = _expire(repo, h, now, hours)
            # at rest like the tracker: masked; as typed beside it for the phone roles, for a while
            masked = mask_personal_data(text)
            repo.add_message(h, RESIDENT, False, masked, now, typed=text if masked != text else None)
            held = True
            if h.state is HandoffState.OFFERED and _offer_seen(repo, h):
                h = repo.step(h, LEAVE, RESIDENT, now)
                repo.add_message(h, SYSTEM, True, LEFT_NOTICE, now)
        replies = _claim(repo, sender_id, now)
        uow.commit()
        return Gate(held, replies)


def _offer_seen(repo: HandoffRepository, h: Handoff) -> bool:
    """The 留言 offer reached the resident before this message (nothing outgoing is still
    undelivered): this message is the 留言."""
    return all(row.delivered_at is not None for row in repo.messages(h.id or 0) if row.outgoing)


def pickup(uow: SqlAlchemyUnitOfWork, sender_id: str, now: datetime, hours: ServiceHours) -> list[str]:
    """What waits for the resident (a REST poll, a widget session's push)."""
    with uow:
        repo = _repo(uow)
        h = repo.open_for(sender_id)
        if h is not None and h.state is HandoffState.WAITING:
            _expire(repo, h, now, hours)
        replies = _claim(repo, sender_id, now)
        uow.commit()
        return replies


@dataclass(frozen=True)
class Outgoing:
    id: int
    sender_id: str
    text: str


def outgoing_on(uow: SqlAlchemyUnitOfWork, channel: str, limit: int = 200) -> list[Outgoing]:
    """Messages for residents of `channel` that no channel has delivered and none has given
    up on yet (no delivery note), oldest first: a channel that pushes (WeChat) sends them."""
    with uow:
        rows = _repo(uow).undelivered_on(channel, limit)
        return [Outgoing(r.id, r.sender_id, r.text) for r in rows]


def claim(uow: SqlAlchemyUnitOfWork, message_id: int, now: datetime) -> bool:
    """This process delivers the message (exactly one claimer)."""
    with uow:
        won = _repo(uow).claim(message_id, now)
        uow.commit()
        return won


def not_delivered(uow: SqlAlchemyUnitOfWork, sender_id: str, from_message_id: int, note: str | None) -> int:
    """The message could not be delivered: un-claimed; with a `note` (why, for the agent) it
    and every later undelivered one of the conversation wait, in order, for the resident's
    next message (how many are noted); without one the pushing channel tries again."""
    with uow:
        n = _repo(uow).hold_back(sender_id, from_message_id, note)
        uow.commit()
        return n


def transferred(uow: SqlAlchemyUnitOfWork, sender_id: str, note: str, now: datetime) -> bool:
    """The channel handed the conversation to another 客服 system (WeChat's
    transfer_customer_service): a hand-off opened for it just now is closed, unseen by our
    agents. False when none was waiting."""
    with uow:
        repo = _repo(uow)
        h = repo.open_for(sender_id)
        if h is None or h.state not in (HandoffState.WAITING, HandoffState.OFFERED):
            return False
        try:
            repo.step(h, CLOSE, SYSTEM, now, note=note)
        except InvalidHandoffStep:  # an agent took it meanwhile: ours, then
            uow.rollback()
            return False
        uow.commit()
        return True


def expire_waiting(uow: SqlAlchemyUnitOfWork, now: datetime, hours: ServiceHours) -> int:
    """Every hand-off nobody took within the wait (or left waiting past closing time) is
    offered a 留言; how many."""
    with uow:
        repo = _repo(uow)
        cutoff = now if not hours.open_at(now) else now - hours.wait
        moved = 0
        for h in repo.waiting_before(cutoff):
            _expire(repo, h, now, hours)
            moved += 1
        uow.commit()
        return moved


# --- the agent's side ----------------------------------------------------------------


def take(uow: SqlAlchemyUnitOfWork, handoff_id: int, actor: str, name: str, now: datetime) -> Handoff:
    """Compare-and-set waiting → taken; AlreadyTaken names who holds it when another was first."""
    with uow:
        repo = _repo(uow)
        h = repo.get(handoff_id)
        if h is None:
            raise LookupError(handoff_id)
        try:
            h = repo.step(h, TAKE, actor, now, agent=actor)
        except InvalidHandoffStep:
            uow.rollback()
            current = repo.get(handoff_id)
            assert current is not None
            raise AlreadyTaken(current.agent, current.state) from None
        repo.add_message(h, SYSTEM, True, TAKEN_NOTICE.format(name=name), now)
        uow.commit()
        return h


def _held_by(repo: HandoffRepository, handoff_id: int, actor: str) -> Handoff:
    h = repo.get(handoff_id)
    if h is None:
        raise LookupError(handoff_id)
    if h.state is not HandoffState.TAKEN or h.agent != actor:
        raise AlreadyTaken(h.agent, h.state)
    return h


def say(uow: SqlAlchemyUnitOfWork, handoff_id: int, actor: str, text: str, now: datetime) -> int:
    """The agent holding the conversation writes to the resident."""
    text = text.strip()
    if not text or len(text) > MAX_AGENT_MESSAGE:
        raise ValueError(f"消息不能为空，且不超过 {MAX_AGENT_MESSAGE} 字")
    with uow:
        repo = _repo(uow)
        h = _held_by(repo, handoff_id, actor)
        message_id = repo.add_message(h, actor, True, text, now)
        uow.commit()
        return message_id


def hand_back(uow: SqlAlchemyUnitOfWork, handoff_id: int, actor: str, now: datetime) -> Handoff:
    with uow:
        repo = _repo(uow)
        h = repo.step(_held_by(repo, handoff_id, actor), HAND_BACK, actor, now)
        repo.add_message(h, SYSTEM, True, HANDED_BACK_NOTICE, now)
        uow.commit()
        return h


def close(uow: SqlAlchemyUnitOfWork, handoff_id: int, actor: str, now: datetime) -> Handoff:
    """End the hand-off: the holder closes a taken one; any agent of its queue a waiting or
    left one (a 留言 dealt with)."""
    with uow:
        repo = _repo(uow)
        h = repo.get(handoff_id)
        if h is None:
            raise LookupError(handoff_id)
        if h.state is HandoffState.TAKEN and h.agent != actor:
            raise AlreadyTaken(h.agent, h.state)
        was_held = h.held
        try:
            h = repo.step(h, CLOSE, actor, now)
        except InvalidHandoffStep:
            raise AlreadyTaken(h.agent, h.state) from None
        if was_held:
            repo.add_message(h, SYSTEM, True, CLOSED_NOTICE, now)
        uow.commit()
        return h
