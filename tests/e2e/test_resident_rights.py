"""查看/导出我的信息 and 删除我的信息 over the REST channel, against the real Rasa server and
action server (the trained model): the export shows this sender's ticket with the phone
masked; someone else typing that ticket number and phone number gets nothing; a 不删除 changes
nothing; a 确认删除 while the ticket is open withdraws it (撤单) and anonymises it, and the
conversation's transcript is gone from the tracker store."""
from __future__ import annotations

import re

from sqlalchemy import select

from bot.services.rights import WITHDRAW_NOTE
from bot.storage.pending_phones import pending_phones
from bot.storage.tables import ticket_events, ticket_reports, tickets
from tests.e2e.chat import Chat

PHONE = "13847119876"
# a community no other test of the shared stack files in: no 并单 into someone else's ticket
COMPLAINT = "河边有人偷偷倒化工废液 河水都变色了 新城区海拉尔东路街道气象局东巷社区"


def _texts(turn: dict) -> str:
    return "\n".join(m.get("text") or "" for m in turn["messages"])


def _rows(stack, ticket_number: str) -> tuple[tuple, list[tuple], tuple]:
    with stack.engine().connect() as conn:
        t = conn.execute(select(tickets.c.id, tickets.c.state).where(tickets.c.number == ticket_number)).one()
        reports = [tuple(r) for r in conn.execute(
            select(ticket_reports.c.sender_id, ticket_reports.c.phone, ticket_reports.c.description)
            .where(ticket_reports.c.ticket_id == t.id))]
        last = tuple(conn.execute(select(ticket_events.c.kind, ticket_events.c.to_state, ticket_events.c.actor,
                                         ticket_events.c.reason)
                                  .where(ticket_events.c.ticket_id == t.id)
                                  .order_by(ticket_events.c.seq.desc()).limit(1)).one())
    return tuple(t), reports, last


def test_export_then_erasure_of_an_open_ticket_over_rest(stack) -> None:
    me = Chat(stack)
    said = [_texts(me.say(text)) for text in (COMPLAINT, "没有", PHONE, "不需要", "确认提交")]
    m = re.search(r"已为您登记，工单号 (QC-\d{6}-\d{4})", said[-1])
    assert m, said
    number = m.group(1)

    shown = me.say("查看我的信息")
    assert shown["keys"] == ["utter_my_data_header", "utter_my_data_ticket", "utter_my_data_footer"]
    text = _texts(shown)
    assert f"工单 {number}（生态环境）当前状态：派单" in text or f"工单 {number}（" in text
    assert "联系电话：138****9876" in text and PHONE not in text
    assert "河边有人偷偷倒化工废液" in text

    # another sender naming the ticket number and the phone: a typed claim opens nothing
    other = Chat(stack)
    claim = other.say(f"导出我的信息 我的电话是{PHONE}")
    assert claim["keys"] == ["utter_my_data_none", "utter_my_data_footer"]
    assert "9876" not in _texts(claim) and "河边" not in _texts(claim)
    claim = other.say(f"查看我的信息 {number}")  # read as a status question: not theirs either
    assert claim["keys"] in (["utter_my_data_none", "utter_my_data_footer"], ["utter_status_not_found"])
    assert "9876" not in _texts(claim) and "河边" not in _texts(claim) and "派单" not in _texts(claim)
    assert other.say("删除我的信息")["keys"] == ["utter_erase_confirm"]
    # (the erasing turn's events are gone with the transcript: its reply is what was sent)
    assert _texts(other.say("/affirm")) == "已删除您的个人信息：0 个工单已清除个人信息，聊天记录已删除。"
    ticket_before = _rows(stack, number)
    assert ticket_before[0][1] == "派单"
    assert [(s, p) for s, p, _ in ticket_before[1]] == [(me.conversation_id, PHONE)]  # the other's erasure: not theirs

    asked = me.say("删除我的信息")
    assert asked["keys"] == ["utter_erase_confirm"]
    assert "1 个工单" in _texts(asked) and "1 个尚未办结的工单将撤回并关闭" in _texts(asked)
    assert me.say("/deny")["keys"] == ["utter_erase_kept"]
    assert _rows(stack, number) == ticket_before  # 不删除 changes nothing

    assert me.say("删除我的信息")["keys"] == ["utter_erase_confirm"]
    done = me.say("/affirm")
    assert _texts(done) == "已删除您的个人信息：1 个工单已清除个人信息，1 个未办结的工单已撤回关闭，聊天记录已删除。"
    (ticket_id, state), reports, last = _rows(stack, number)
    assert state == "已撤单"
    assert [(s, p) for s, p, _ in reports] == [(f"anon:{ticket_id}:1", None)]
    assert last == ("撤单", "已撤单", "resident:erased", WITHDRAW_NOTE)

    # the transcript is gone: the Rasa server holds nothing of the conversation now
    assert [e for e in me.events() if e.get("event") == "user"] == []
    assert me.say("查看我的信息")["keys"] == ["utter_my_data_none", "utter_my_data_footer"]


def test_export_and_erasure_asked_in_the_middle_of_a_complaint(stack) -> None:
    """Mid-form, 查看我的信息 is answered and the form asks its question again; 删除我的信息 asks
    first, a no lets the form go on, a yes erases the phone the form held and ends the form:
    nothing is filed by a later 确认提交."""
    me = Chat(stack)
    assert me.say(COMPLAINT)["keys"] == ["utter_ask_photo"]
    shown = me.say("导出我的信息")
    assert shown["keys"] == ["utter_my_data_none", "utter_my_data_footer", "utter_ask_photo"]
    assert me.say("没有")["keys"] == ["utter_ask_phone"]
    assert me.say(PHONE)["keys"] == ["utter_ask_confidential"]
    with stack.engine().connect() as conn:
        assert conn.execute(select(pending_phones.c.phone)
                            .where(pending_phones.c.sender_id == me.conversation_id)).scalars().all() == [PHONE]

    assert me.say("删除我的信息")["keys"] == ["utter_erase_confirm"]
    assert me.say("/deny")["keys"] == ["utter_erase_kept", "utter_ask_confidential"]
    assert me.say("删除我的信息")["keys"] == ["utter_erase_confirm"]
    done = me.say("/affirm")
    assert _texts(done) == ("已删除您的个人信息：0 个工单已清除个人信息，您正在填写、尚未提交的诉求已一并取消，"
                            "聊天记录已删除。")
    with stack.engine().connect() as conn:
        assert conn.execute(select(pending_phones).where(pending_phones.c.sender_id == me.conversation_id)).all() == []
    assert [e for e in me.events() if e.get("event") == "user"] == []
    # the form is gone with the transcript: a 确认提交 now files nothing
    assert "utter_complaint_summary" not in me.say("不需要")["keys"]
    me.say("确认提交")
    with stack.engine().connect() as conn:
        assert conn.execute(select(ticket_reports).where(ticket_reports.c.sender_id == me.conversation_id)).all() == []
