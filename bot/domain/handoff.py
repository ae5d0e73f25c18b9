"""A conversation handed to a person (转人工): states and one transition table.

    waiting ──接入(agent)──→ taken ──交还──→ returned   (the assistant answers again)
       │                       └──结束──→ closed
       ├──提供留言 (outside service hours, or nobody took it in time)──→ offered
       │        └──留言 (the resident's next message)──→ left ──结束──→ closed
       │                                                   └──接入──→ taken (to answer it in the chat)
       └──结束──→ closed

While a hand-off is waiting, taken or offered the assistant stays silent: the resident's
messages are kept for the person (bot/channels/handoff_gate.py). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import Enum

from bot.domain.clock import SHANGHAI


class HandoffState(str, Enum):
    WAITING = "waiting"
    TAKEN = "taken"
    RETURNED = "returned"
    CLOSED = "closed"
    OFFERED = "offered"  # 留言 offered: the resident's next message is the 留言
    LEFT = "left"  # 留言 left: in the agents' list until closed; the assistant answers again

    @property
    def label(self) -> str:
        return STATE_LABELS[self]


STATE_LABELS = {
    HandoffState.WAITING: "等待接入",
    HandoffState.TAKEN: "人工服务中",
    HandoffState.RETURNED: "已交还助手",
    HandoffState.CLOSED: "已结束",
    HandoffState.OFFERED: "待留言",
    HandoffState.LEFT: "已留言",
}
# States in which the assistant is silent and the resident's messages are kept for a person.
HELD_STATES = frozenset({HandoffState.WAITING, HandoffState.TAKEN, HandoffState.OFFERED})
# States listed in the agents' queue.
QUEUE_STATES = frozenset({HandoffState.WAITING, HandoffState.TAKEN, HandoffState.LEFT})
OPEN_STATES = HELD_STATES | {HandoffState.LEFT}

# Why a conversation waits for a person.
ASKED, NOT_UNDERSTOOD, SUMMARY_REFUSED, MONGOLIAN, RULE = "asked", "not_understood", "summary_refused", "mongolian", "rule"
QUESTION = "question"  # the knowledge base had no answer: a 咨询 item, opened as left (the assistant answers on)
REASONS = {
    QUESTION: "知识库无法答复的咨询",
    ASKED: "居民要求人工服务",
    NOT_UNDERSTOOD: "助手连续两次没听懂",
    SUMMARY_REFUSED: "居民两次否认诉求摘要",
    MONGOLIAN: "蒙古文留言",
    RULE: "管理员规则",
}
# The language a reason needs from the agent ("" = any agent).
REASON_LANGUAGE = {MONGOLIAN: "mn"}

# Event kinds (stored as the Chinese word).
REQUEST, TAKE, HAND_BACK, CLOSE, OFFER, LEAVE = "转人工", "接入", "交还", "结束", "提供留言", "留言"
# Steps that do not change the state (a note in the hand-off's log): a ticket filed for the
# resident (note: its number).
FILED = "代登记"
# A 留言 read by the console (bot/console/services/handoff_filing.settle_left): filed as a
# ticket (代登记, then 结束), or kept for an agent to answer as a 咨询 item (转咨询).
CONSULT = "转咨询"
# The complaint form's answers when the resident said no to its summary twice (note: JSON),
# kept for the agent's 代登记 (bot/conversation.kept_answers).
FORM_KEPT = "诉求表单"
# An agent added their answer to a 咨询 item to the knowledge base (note: the topic id).
KNOWLEDGE_ADDED = "加入知识库"
# A question the knowledge base could not answer, kept for an agent (opens a left hand-off).
ASKED_QUESTION = "咨询"
_H = HandoffState
TRANSITIONS: dict[str, tuple[frozenset[HandoffState], HandoffState]] = {
    TAKE: (frozenset({_H.WAITING, _H.LEFT}), _H.TAKEN),  # a 留言 is taken to answer it in the chat
    HAND_BACK: (frozenset({_H.TAKEN}), _H.RETURNED),
    CLOSE: (frozenset({_H.WAITING, _H.TAKEN, _H.OFFERED, _H.LEFT}), _H.CLOSED),
    OFFER: (frozenset({_H.WAITING}), _H.OFFERED),
    LEAVE: (frozenset({_H.OFFERED}), _H.LEFT),
}


class InvalidHandoffStep(Exception):
    """A step the hand-off's state does not allow (someone else moved it first)."""


def next_state(kind: str, state: HandoffState) -> HandoffState:
    allowed, to = TRANSITIONS[kind]
    if state not in allowed:
        raise InvalidHandoffStep(f"{kind}: not allowed in state {state.value}")
    return to


@dataclass(frozen=True)
class HandoffEvent:
    kind: str
    actor: str  # resident | system | user:<name>
    at: datetime
    note: str = ""


@dataclass
class Handoff:
    id: int | None
    sender_id: str
    channel: str
    reason: str
    language: str
    state: HandoffState
    requested_at: datetime
    agent: str | None = None  # user:<name> while taken
    events: list[HandoffEvent] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return self.state in HELD_STATES

    def waited(self, now: datetime) -> timedelta:
        return now - self.requested_at


@dataclass(frozen=True)
class ServiceHours:
    """When agents answer (every day, Hohhot time) and how long a resident waits before 留言."""
    start: time = time(8, 0)
    end: time = time(20, 0)
    wait: timedelta = timedelta(minutes=10)

    def open_at(self, now: datetime) -> bool:
        local = now.astimezone(SHANGHAI).time()
        return self.start <= local < self.end

    @property
    def label(self) -> str:
        return f"每天 {self.start:%H:%M}–{self.end:%H:%M}"

    def timed_out(self, handoff: Handoff, now: datetime) -> bool:
        return handoff.state is HandoffState.WAITING and handoff.waited(now) >= self.wait

    @classmethod
    def parse(cls, hours: str | None, wait_minutes: str | None) -> ServiceHours:
        """QC_HANDOFF_HOURS "08:00-20:00" and QC_HANDOFF_WAIT_MINUTES "10"; blank: the defaults."""
        default = cls()
        start, end = default.start, default.end
        if hours and hours.strip():
            try:
                a, b = hours.strip().split("-")
                start, end = time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
            except ValueError:
                raise ValueError(f"QC_HANDOFF_HOURS must look like 08:00-20:00, not {hours!r}") from None
            if start >= end:
                raise ValueError("QC_HANDOFF_HOURS: the start must be before the end")
        wait = default.wait
        if wait_minutes and wait_minutes.strip():
            minutes = int(wait_minutes)
            if not 1 <= minutes <= 24 * 60:
                raise ValueError("QC_HANDOFF_WAIT_MINUTES must be between 1 and 1440")
            wait = timedelta(minutes=minutes)
        return cls(start, end, wait)


# What the resident reads (Chinese; the Mongolian line for a Mongolian-script message).
MONGOLIAN_LINE = "ᠠᠵᠢᠯᠲᠠᠨ ᠲᠠᠨ ᠳᠤ ᠬᠠᠷᠢᠭᠤ ᠥᠭᠬᠦ ᠪᠣᠯᠤᠨ᠎ᠠ᠃"  # "a staff member will answer you"


def waiting_notice(position: int, hours: ServiceHours, language: str = "") -> str:
    text = (f"正在为您转接人工客服，请稍候。您前面还有 {position - 1} 位居民在等待。"
            f"人工服务时间：{hours.label}。等待期间您发的消息会转给工作人员。")
    return f"{MONGOLIAN_LINE}\n{text}" if language == "mn" else text


def offer_notice(hours: ServiceHours, outside_hours: bool, language: str = "") -> str:
    why = f"现在不在人工服务时间（{hours.label}）" if outside_hours else "暂时没有工作人员接入"
    text = f"{why}。请直接留言说明您的问题，我们会转给工作人员，上班后尽快答复您。"
    return f"{MONGOLIAN_LINE}\n{text}" if language == "mn" else text


LEFT_NOTICE = "已收到您的留言，工作人员会尽快答复您。您也可以继续在这里描述问题，我来帮您登记。"
TAKEN_NOTICE = "工作人员{name}已接入，请问有什么可以帮您？"
HANDED_BACK_NOTICE = "人工服务已结束，青城诉求助手继续为您服务。您可以直接描述遇到的问题。"
CLOSED_NOTICE = "本次人工服务已结束，感谢您的耐心。如有新的问题，可以直接告诉我。"
FILED_NOTICE = "工作人员已为您登记诉求，工单号 {number}。处理进展会通知您，您也可以随时发送工单号查询进度。"
MERGED_NOTICE = ("您反映的问题与正在处理的工单 {number} 相同，已并入该工单一起办理。"
                 "处理进展会同样通知您，您也可以随时发送工单号查询进度。")
QUESTION_NOTICE = "已为您记下这个问题，工作人员答复后会在这里告诉您。"
