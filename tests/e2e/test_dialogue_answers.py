"""Typed equivalents of the buttons, from outside (issue 13 items 10–12, issue 20 item 7):
a resident over the REST channel of the real Rasa + action servers; what is left in the
database (tickets, reports, 回访 events, the review inbox). Each test failed on 1b9772b."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from bot.console import services as svc
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.model import ComplaintDraft, DispatchClass, Route
from bot.paths import REPO_ROOT
from bot.retraining.tables import review_items
from bot.services.tickets import file_complaint
from bot.storage.tables import ticket_events, ticket_reports, tickets
from tests.e2e.chat import TOKEN, Chat
from tests.e2e.conftest import _free_port, wait_http

UNSURE = "公主府社区楼下那个东西又坏了"  # the model is unsure: two category buttons + 都不是


def _report(stack, chat: Chat) -> dict:
    with stack.engine().connect() as conn:
        row = conn.execute(
            select(ticket_reports.c.description, ticket_reports.c.phone, tickets.c.category, tickets.c.street_code)
            .join(tickets, tickets.c.id == ticket_reports.c.ticket_id)
            .where(ticket_reports.c.sender_id == chat.conversation_id)  # channel + sender (issue 13.3)
        ).mappings().all()
    assert len(row) == 1, row
    return dict(row[0])


def _finish(chat: Chat) -> None:
    assert chat.say("没有")["keys"] == ["utter_ask_phone"]
    assert chat.say("不留")["keys"] == ["utter_complaint_summary"]
    assert chat.say("确认")["keys"][0] in ("utter_complaint_filed", "utter_complaint_merged")


# --- 13.10: typed answers to the category buttons --------------------------------------


@pytest.mark.parametrize("typed, categories", [
    ("都不是", {"other"}),
    ("其他", {"other"}),
    ("市政设施", {"roads_lighting"}),
    # 环境卫生/垃圾 in the 12-code catalogue, 生态环境 once branch nlu's codes are in it
    ("是环境污染问题", {"sanitation", "ecology"}),
])
def test_a_typed_answer_to_the_category_buttons_files_the_complaint(stack, typed: str, categories: set) -> None:
    chat = Chat(stack)
    offered = chat.say(UNSURE)
    assert offered["keys"] == ["utter_clarify_category"]
    assert "/other" in [b["payload"] for e in offered["bot"] for b in (e.get("data") or {}).get("buttons") or []]
    # typed, not clicked: the complaint goes on (the place and the text were already given)
    assert chat.say(typed)["keys"] == ["utter_ask_photo"]
    _finish(chat)
    report = _report(stack, chat)
    assert report["category"] in categories
    assert (report["description"], report["street_code"]) == (UNSURE, "150102001")


# --- 13.10: the 回访 answer in words ---------------------------------------------------------


@pytest.fixture(scope="module")
def console(stack, tmp_path_factory):
    """Our web server on the stack's store: its outbox pushes ticket news to Rasa (trigger_intent)."""
    tmp = tmp_path_factory.mktemp("console")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "QC_WEB_HOST": "127.0.0.1", "QC_WEB_PORT": str(port),
           "QC_RASA_URL": stack.rasa_url, "QC_RASA_TOKEN": TOKEN, "QC_DATABASE_URL": stack.db_url,
           "QC_UPLOAD_DIR": str(tmp / "uploads"), "QC_NOTIFIER_INTERVAL": "0.5"}
    with open(tmp / "web.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bot.web.app"], cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _resolved_ticket(stack, chat: Chat) -> str:
    """A ticket of this resident that a worker accepted and resolved (the console's services
    on the store); the console's outbox then tells the resident and asks the 回访 question."""
    engine = stack.engine()
    now = datetime.now(timezone.utc)
    with ConsoleUnitOfWork(engine) as uow:
        admin = uow.console.get_user_by_username("admin_dialogue")
    if admin is None:
        svc.create_user(ConsoleUnitOfWork(engine), "admin_dialogue", "回访测试", "a-long-password-1", "admin", [], now)
    with ConsoleUnitOfWork(engine) as uow:
        principal = svc.Principal.of(uow.console.get_user_by_username("admin_dialogue"))
    draft = ComplaintDraft(chat.conversation_id, "rest", "roads_lighting", "路灯坏了一个星期", "新城区", None, None,
                           False, f"{chat.conversation_id}:1")  # a resident is channel + sender (issue 13.3)
    route = Route("municipal_facilities", ("street:150102001",), "150102", "150102001", None, DispatchClass.NORMAL, "测试")
    filed = file_complaint(ConsoleUnitOfWork(engine), draft, route, now)
    svc.perform(ConsoleUnitOfWork(engine), principal, filed.ticket_id, "accept", {}, now)
    svc.perform(ConsoleUnitOfWork(engine), principal, filed.ticket_id, "resolve", {"result": "已更换灯泡"}, now)
    engine.dispose()
    deadline = time.monotonic() + 60
    keys: list = []
    while time.monotonic() < deadline and "utter_ticket_resolved" not in keys:
        time.sleep(0.5)
        keys = [(e.get("metadata") or {}).get("utter_action")
                for e in asyncio.run(chat._events()) if e.get("event") == "bot"]
    assert "utter_ticket_resolved" in keys, keys
    chat._seen = len(asyncio.run(chat._events()))
    return filed.number


@pytest.mark.parametrize("typed, state, data", [
    ("满意，谢谢你们", "回访", {"solved": True, "satisfaction": "满意"}),
    ("基本满意吧", "回访", {"solved": True, "satisfaction": "基本满意"}),
    ("不太满意", "回访", {"solved": True, "satisfaction": "不满意"}),
    ("还是没修好", "派单", {"solved": False, "satisfaction": "不满意"}),
])
def test_a_typed_followup_answer_is_recorded(stack, console, typed: str, state: str, data: dict) -> None:
    chat = Chat(stack)
    chat.say("你好")
    number = _resolved_ticket(stack, chat)
    answer = chat.say(typed)
    assert answer["keys"] == ["utter_followup_thanks" if state == "回访" else "utter_followup_reopened"]
    with stack.engine().connect() as conn:
        got = conn.execute(select(tickets.c.state).where(tickets.c.number == number)).scalar_one()
        last = conn.execute(
            select(ticket_events.c.kind, ticket_events.c.data).join(tickets, tickets.c.id == ticket_events.c.ticket_id)
            .where(tickets.c.number == number).order_by(ticket_events.c.seq.desc())
        ).first()
    assert got == state
    assert last.data == data


# --- 13.11: a complaint with personal details -------------------------------------------


def test_a_complaint_with_personal_details_is_the_complaint(stack) -> None:
    chat = Chat(stack)
    first = chat.say("楼上漏水到我家，我叫李四海，电话13987654321，身份证150102198506061234，我家在新城区体校巷社区")
    # recognised, the place taken: the next question is the photo (not "what is the problem?")
    assert first["keys"] == ["utter_ask_photo"]
    assert chat.say("没有")["keys"] == ["utter_ask_confidential"]  # the phone is already the contact
    summary = chat.say("不需要")
    assert summary["keys"] == ["utter_complaint_summary"]
    shown = summary["bot"][0]["text"]
    assert "139****4321" in shown and "13987654321" not in shown and "150102198506061234" not in shown
    assert "物业与小区" in shown and "体校巷社区" in shown
    assert chat.say("确认")["keys"][0] in ("utter_complaint_filed", "utter_complaint_merged")
    report = _report(stack, chat)
    assert report["phone"] == "13987654321" and report["category"] == "property"
    assert report["description"] == "楼上漏水到我家，我家在新城区体校巷社区"
    assert report["street_code"] == "150102001"


# --- 13.12: a question at the photo question ----------------------------------------------


def test_a_question_at_the_photo_question_is_answered_and_not_the_description(stack) -> None:
    chat = Chat(stack)
    complaint = "新城区体校巷社区楼下饭店半夜放音乐吵得睡不着"
    assert chat.say(complaint)["keys"] == ["utter_ask_photo"]
    assert chat.say("噪音怎么拍照片，没有")["keys"] == ["utter_photo_help", "utter_ask_phone"]
    assert chat.say("不留")["keys"] == ["utter_complaint_summary"]
    assert chat.say("确认")["keys"][0] in ("utter_complaint_filed", "utter_complaint_merged")
    assert _report(stack, chat)["description"] == complaint


# --- 20.7: 取消 is a cancel, a correction is a correction ----------------------------------


def _inbox_rows(stack, sender: str) -> list:
    with stack.engine().connect() as conn:
        return [dict(r) for r in conn.execute(
            select(review_items.c.source, review_items.c.text, review_items.c.correction)
            .where(review_items.c.dedupe_key.like(f"%:{sender}:%")).order_by(review_items.c.id)
        ).mappings()]


def test_cancel_at_the_summary_is_a_cancel_not_a_denied_category(stack) -> None:
    chat = Chat(stack)
    assert chat.say("新城区体校巷社区楼下烧烤店排风扇声音太大")["keys"] == ["utter_ask_photo"]
    assert chat.say("没有")["keys"] == ["utter_ask_phone"]
    assert chat.say("不留")["keys"] == ["utter_complaint_summary"]
    assert chat.say("取消")["keys"] == ["utter_complaint_cancelled"]
    # an unsure message afterwards lands in the inbox: the background writer works. A
    # "denied" row for the 取消 (what 1b9772b wrote) would come within the same few seconds.
    assert chat.say(UNSURE)["keys"] == ["utter_clarify_category"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sources = [r["source"] for r in _inbox_rows(stack, chat.sender)]
        if "deny" in sources or ("fallback" in sources and time.monotonic() > deadline - 5):
            break
        time.sleep(0.2)
    assert [r["source"] for r in _inbox_rows(stack, chat.sender)] == ["fallback"]


def test_a_correction_at_the_summary_changes_the_category_and_goes_on(stack) -> None:
    chat = Chat(stack)
    complaint = "新城区体校巷社区楼下那家店的音响吵得不行"
    assert chat.say(complaint)["keys"] == ["utter_ask_photo"]
    assert chat.say("没有")["keys"] == ["utter_ask_phone"]
    assert "噪声扰民" in chat.say("不留")["bot"][0]["text"]
    corrected = chat.say("不对，是下水道堵了返臭味，不是噪音")
    assert corrected["keys"] == ["utter_complaint_summary"]  # the conversation goes on
    assert "排水与污水" in corrected["bot"][0]["text"]
    assert chat.say("确认")["keys"][0] in ("utter_complaint_filed", "utter_complaint_merged")
    assert _report(stack, chat)["category"] == "drainage"
    deadline = time.monotonic() + 10  # the inbox is written in the background
    while not _inbox_rows(stack, chat.sender) and time.monotonic() < deadline:
        time.sleep(0.2)
    # recorded as the resident's correction, with the category they gave
    assert _inbox_rows(stack, chat.sender) == [{"source": "deny", "text": complaint, "correction": {
        "denied": "noise", "intent": "drainage", "chosen_by": "resident"}}]


# --- the outside tester, on today's catalogue: corrections, contact clauses, "不知道" -------------

NOISY = "海拉尔东路街道公主府社区旁边工厂晚上一直很吵"


@pytest.mark.parametrize("correction", ["不对，是化工厂排废气污染，不是噪音", "不是噪音，是油烟", "类别不对，是大气污染"])
def test_a_correction_to_ecology_at_the_summary_is_taken(stack, correction: str) -> None:
    chat = Chat(stack)
    assert chat.say(NOISY)["keys"] == ["utter_ask_photo"]
    assert chat.say("跳过")["keys"] == ["utter_ask_phone"]
    assert "噪声扰民" in chat.say("跳过")["bot"][0]["text"]
    corrected = chat.say(correction)
    assert corrected["keys"] == ["utter_complaint_summary"]  # shown again, with the new category
    assert "生态环境" in corrected["bot"][0]["text"] and "噪声扰民" not in corrected["bot"][0]["text"]
    assert chat.say("确认")["keys"][0] in ("utter_complaint_filed", "utter_complaint_merged")
    assert _report(stack, chat)["category"] == "ecology"
    deadline = time.monotonic() + 10  # the inbox is written in the background
    while not _inbox_rows(stack, chat.sender) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _inbox_rows(stack, chat.sender) == [{"source": "deny", "text": NOISY, "correction": {
        "denied": "noise", "intent": "ecology", "chosen_by": "resident"}}]


@pytest.mark.parametrize("message, categories, description", [
    # 下水井盖: a manhole cover, 市政设施 or 排水 (both routes reach the street)
    ("公主府社区下水井盖缺失，联系方式：13847112345", {"roads_lighting", "drainage"}, "公主府社区下水井盖缺失"),
    ("市民来电反映：海拉尔东路街道公主府社区门口的路灯不亮已经一个星期了，晚上出行很不方便，希望尽快修复。联系方式：13847112345。",
     {"roads_lighting"}, "市民来电反映：海拉尔东路街道公主府社区门口的路灯不亮已经一个星期了，晚上出行很不方便，希望尽快修复。"),
])
def test_a_complaint_with_a_contact_clause_is_the_complaint(stack, message: str, categories: set,
                                                            description: str) -> None:
    chat = Chat(stack)
    assert chat.say(message)["keys"] == ["utter_ask_photo"]  # understood, the place taken
    assert chat.say("没有")["keys"] == ["utter_ask_confidential"]  # the phone is the contact
    assert chat.say("不需要")["keys"] == ["utter_complaint_summary"]
    assert chat.say("确认")["keys"][0] in ("utter_complaint_filed", "utter_complaint_merged")
    report = _report(stack, chat)
    assert report["category"] in categories
    assert (report["phone"], report["street_code"]) == ("13847112345", "150102001")
    assert report["description"] == description


@pytest.mark.parametrize("typed", ["不知道", "不知道啊", "你看着办", "跳过", "确认提交"])
def test_an_unclear_answer_to_the_category_buttons_files_under_other(stack, typed: str) -> None:
    chat = Chat(stack)
    assert chat.say(UNSURE)["keys"] == ["utter_clarify_category"]
    # never the category question again: 其他, said so, and the form goes on
    assert chat.say(typed)["keys"] == ["utter_category_other", "utter_ask_photo"]
    _finish(chat)
    report = _report(stack, chat)
    assert (report["category"], report["description"], report["street_code"]) == ("other", UNSURE, "150102001")


def test_a_plain_no_then_the_right_category_at_the_summary(stack) -> None:
    """The tester's second try: "不对", then "是化工厂排废气污染" (once filed under 排水与污水)."""
    chat = Chat(stack)
    assert chat.say(NOISY)["keys"] == ["utter_ask_photo"]
    assert chat.say("跳过")["keys"] == ["utter_ask_phone"]
    assert chat.say("跳过")["keys"] == ["utter_complaint_summary"]
    assert chat.say("不对")["keys"][0] == "utter_confirm_what_wrong"
    corrected = chat.say("是化工厂排废气污染")
    assert corrected["keys"] == ["utter_complaint_summary"]
    assert "生态环境" in corrected["bot"][0]["text"]
    assert chat.say("确认")["keys"][0] in ("utter_complaint_filed", "utter_complaint_merged")
    assert _report(stack, chat)["category"] == "ecology"
