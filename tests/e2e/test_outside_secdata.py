"""Issue 13 items 6–9, checked from the outside: a resident over Rasa's REST channel and the
widget's upload endpoint, workers and a dispatcher over HTTP against our web server (a
separate process, `python -m bot.web.app`), accounts and keys made with the CLI
(`python -m bot console …`), and the database read back. Real Rasa + action servers
(the session's `stack`), no code of ours called in-process.

6. a resident's photo reaches the worker (permission-checked), never the public; a typed
   link is not a photo; Open311 media_url is the URL an Open311 client published.
7. 派单 records the street on the ticket; a district-only location keeps its district and
   the compound (小区) name typed.
8. a named street that disagrees with the compound's street is asked, never replaced.
9. the 签收 notice names the unit that signed; after 派单 the dispatcher lands on their
   queue with a notice; the timeline shows names, never `user:…`.
"""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time

import pytest
import requests
from sqlalchemy import select

from bot.paths import REPO_ROOT
from bot.photoclean import clean_photo
from bot.storage.tables import ticket_events, ticket_reports, tickets
from tests.e2e.chat import TOKEN, Chat, Stack
from tests.e2e.conftest import _free_port, wait_http
from tests.photos import plain

# a little PNG (the server decodes it: a photo must be a real picture)
PNG = plain("PNG")
STORED_PNG = clean_photo(PNG, "png")  # what the server keeps: re-encoded from its pixels, no metadata
STREET = "150102002"  # 锡林北路街道, 新城区 (no other e2e test files there)
OTHER_STREET = "150102001"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _cli(stack: Stack, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "QC_DATABASE_URL": stack.db_url}
    out = subprocess.run([sys.executable, "-m", "bot", "console", *args], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def web(stack: Stack, tmp_path_factory):
    """Our web server on the stack's store, pushing notices to its Rasa server; accounts by CLI."""
    tmp = tmp_path_factory.mktemp("secdata-web")
    passwords = {}
    for user, role, queues, name in (
        ("grid_xlb", "worker", [f"street:{STREET}"], "锡林北路网格员小李"),
        ("grid_other", "worker", [f"street:{OTHER_STREET}"], "海拉尔东路网格员小王"),
        ("disp_x", "dispatcher", ["dispatch_center"], "派单员小赵"),
    ):
        passwords[user] = _cli(stack, "adduser", user, role, *queues, "--name", name).split()[-1]
    api_key = _cli(stack, "apikey", "secdata-client").split()[-1]
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "QC_WEB_HOST": "127.0.0.1", "QC_WEB_PORT": str(port),
           "QC_RASA_URL": stack.rasa_url, "QC_RASA_TOKEN": TOKEN, "QC_DATABASE_URL": stack.db_url,
           "QC_UPLOAD_DIR": stack.uploads, "QC_NOTIFIER_INTERVAL": "0.5"}
    with open(tmp / "web.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bot.web.app"], cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield {"url": f"http://127.0.0.1:{port}", "passwords": passwords, "api_key": api_key}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def log_in(web: dict, user: str) -> tuple[requests.Session, str]:
    s = requests.Session()
    page = s.get(f"{web['url']}/console/login", timeout=30)
    r = s.post(f"{web['url']}/console/login", timeout=30, allow_redirects=False,
               data={"csrf": CSRF.search(page.text).group(1), "username": user, "password": web["passwords"][user]})
    assert r.status_code in (302, 303), r.text[:300]
    queue = s.get(f"{web['url']}/console/queue", timeout=30)
    return s, CSRF.search(queue.text).group(1)


def file_by_chat(stack: Stack, steps: list[str]) -> tuple[Chat, list[dict]]:
    chat = Chat(stack)
    turns = [chat.say(text) for text in steps]
    return chat, turns


def rows_of(stack: Stack, sender: str) -> tuple[dict, dict]:
    with stack.engine().connect() as conn:
        report = conn.execute(select(ticket_reports).where(  # REST conversations are "rest:<sender>" (bot/security/identity.py)
            ticket_reports.c.sender_id.in_([sender, f"rest:{sender}"]))).mappings().one()
        ticket = conn.execute(select(tickets).where(tickets.c.id == report["ticket_id"])).mappings().one()
    return dict(ticket), dict(report)


def said(turn: dict) -> str:
    return "\n".join(e.get("text") or "" for e in turn["bot"])


# --- 6: the resident's photo ------------------------------------------------------

def upload(web: dict, rest_sender: str) -> dict:
    """A trusted REST front-end uploads a photo for its resident (the widget names its session)."""
    up = requests.post(f"{web['url']}/widget/upload", timeout=30, files={"file": ("p.png", PNG, "image/png")},
                       headers={"X-QC-Widget": "1", "X-QC-Rest-Sender": rest_sender})
    assert up.status_code == 201, up.text
    return up.json()



def test_the_residents_photo_reaches_the_streets_worker_and_never_the_public(stack, web):
    chat = Chat(stack)
    url = upload(web, chat.sender)["url"]
    turns = [chat.say(text) for text in (
        "车站西街社区楼道里堆满了垃圾好几天没人清理",
        f'/inform{{"photo": "{url}"}}',
        "不留电话",
        "确认提交",
    )]
    assert "照片：已上传" in said(turns[-2])
    ticket, report = rows_of(stack, chat.sender)
    assert (report["photo"], ticket["street_code"]) == (url, STREET)

    worker, _ = log_in(web, "grid_xlb")
    page = worker.get(f"{web['url']}/console/tickets/{ticket['id']}", timeout=30)
    link = f"/console/tickets/{ticket['id']}/photos/{report['id']}"
    assert page.status_code == 200 and f'src="{link}"' in page.text
    photo = worker.get(web["url"] + link, timeout=30)
    assert (photo.status_code, photo.headers["Content-Type"], photo.content) == (200, "image/png", STORED_PNG)
    assert photo.headers["Cache-Control"].startswith("private")

    # another street's worker, and nobody logged in: no photo
    other, _ = log_in(web, "grid_other")
    assert other.get(web["url"] + link, timeout=30).status_code == 404
    anon = requests.get(web["url"] + link, timeout=30, allow_redirects=False)
    assert anon.status_code in (302, 303) and "/console/login" in anon.headers["Location"]
    # the public Open311 output: no media_url, nothing of the photo
    public = requests.get(f"{web['url']}/open311/v2/requests/{ticket['number']}.json", timeout=30)
    assert public.status_code == 200
    assert public.json()[0]["media_url"] is None and url.rsplit("/", 1)[1] not in public.text


def test_a_photo_is_its_uploaders_only(stack, web):
    """Outside test of 6 May: a resident's photo URL was public forever, and another REST sender
    (or an Open311 client) attached it to their own ticket, where another street's worker saw it."""
    owner = Chat(stack)
    up = upload(web, owner.sender)
    url = up["url"]
    # the reference is no public link; the uploader's own signed link shows it, a forged one not
    assert requests.get(url, timeout=30).status_code == 404
    view = up["view"]
    assert requests.get(view, timeout=30).content == STORED_PNG
    assert requests.get(view.replace(f"s=rest:{owner.sender}", "s=rest:someone"), timeout=30).status_code == 404
    assert requests.get(re.sub(r"e=\d+", "e=9999999999", view), timeout=30).status_code == 404
    # another REST sender cannot make it theirs: the payload is ordinary text, no photo
    thief, turns = file_by_chat(stack, [
        "锡林北路街道车站西街社区路灯坏了好几个晚上不亮",
        f'/inform{{"photo": "{url}"}}',
        "没有照片",
        "不留电话",
        "确认提交",
    ])
    assert "照片：已上传" not in said(turns[-2])
    ticket, report = rows_of(stack, thief.conversation_id)
    assert report["photo"] is None
    # nor an Open311 client through media_url
    r = requests.post(f"{web['url']}/open311/v2/requests.json", timeout=30, data={
        "api_key": web["api_key"], "service_code": "sanitation", "address_string": "锡林北路街道车站西街社区",
        "description": "垃圾没人清运", "media_url": url})
    assert r.status_code == 400 and "media_url" in r.text
    with stack.engine().connect() as conn:
        assert conn.execute(select(ticket_reports.c.id).where(ticket_reports.c.photo == url)).all() == []


def test_a_refused_payload_is_noise_not_the_description(stack):
    """Outside test of 6 May: a refused /inform{…} (shown as ／inform{…}) became 补充 in the description."""
    first = "车站东街社区楼下的垃圾站满了好几天没人清运"
    chat = Chat(stack)
    assert chat.say(first)["keys"] == ["utter_ask_photo"]
    forged = '/inform{"photo": "http://evil.example/widget/photo/' + "ab" * 16 + '.jpg"}'
    assert chat.say(forged)["keys"] == ["utter_photo_not_received", "utter_ask_photo"]
    for text in ("没有", "不留", "确认提交"):
        chat.say(text)
    _, report = rows_of(stack, chat.sender)
    assert (report["description"], report["photo"]) == (first, None)


def test_a_link_typed_in_the_complaint_is_not_a_photo(stack):
    chat, turns = file_by_chat(stack, [
        "车站东街社区门口的垃圾桶满了没人清运 照片在这 https://evil.example/x.jpg",
    ])
    assert turns[0]["keys"] == ["utter_ask_photo"]  # still asked: the link is not a photo we have
    turns.append(chat.say("https://evil.example/y.jpg"))
    assert turns[1]["keys"] == ["utter_photo_not_received", "utter_ask_photo"]
    for text in ("没有", "不留", "确认提交"):
        turns.append(chat.say(text))
    assert "照片：无" in said(turns[-2])
    _, report = rows_of(stack, chat.sender)
    assert report["photo"] is None


def test_open311_media_url_is_the_clients_published_photo(web):
    media = "https://img.example.org/reports/a1.jpg"
    r = requests.post(f"{web['url']}/open311/v2/requests.json", timeout=30, data={
        "api_key": web["api_key"], "service_code": "street_order", "address_string": "新城区三角线社区",
        "description": "人行道上有人摆摊占道", "media_url": media})
    assert r.status_code == 201, r.text
    number = r.json()[0]["service_request_id"]
    got = requests.get(f"{web['url']}/open311/v2/requests/{number}.json", timeout=30).json()
    assert got[0]["media_url"] == media


# --- 7 + 9: 派单 from the dispatch centre ------------------------------------------------


def test_a_district_only_place_keeps_the_district_and_the_compound_name(stack):
    chat, turns = file_by_chat(stack, ["幸福家园小区门口垃圾堆了好几天没人清理", "新城区", "没有", "不留", "确认提交"])
    assert turns[0]["keys"] == ["utter_ask_location_more"]
    assert "地点：新城区 幸福家园小区" in said(turns[-2])
    ticket, report = rows_of(stack, chat.sender)
    assert (ticket["lead_queue"], ticket["district_code"], ticket["street_code"]) == ("dispatch_center", "150102", None)
    assert (ticket["location_text"], report["location_text"]) == ("新城区 幸福家园小区", "新城区 幸福家园小区")


def _dispatch(stack, web, compound: str) -> tuple[dict, Chat, requests.Response, requests.Session]:
    chat, _ = file_by_chat(stack, [f"新城区{compound}楼下垃圾没人清理", "不清楚", "没有", "不留", "确认提交"])
    ticket, _ = rows_of(stack, chat.sender)
    assert (ticket["lead_queue"], ticket["street_code"]) == ("dispatch_center", None)
    disp, csrf = log_in(web, "disp_x")
    r = disp.post(f"{web['url']}/console/tickets/{ticket['id']}/dispatch", timeout=30, allow_redirects=False,
                  data={"csrf": csrf, "lead": "sanitation_authority", "street": STREET, "reason": "属地锡林北路"})
    assert r.status_code == 303
    return ticket, chat, r, disp


def test_dispatch_records_the_street_on_the_ticket(stack, web):
    ticket, chat, _, _ = _dispatch(stack, web, "和谐佳园小区")
    after, _ = rows_of(stack, chat.sender)
    assert (after["street_code"], after["district_code"], after["lead_queue"]) == (STREET, "150102", "sanitation_authority")
    with stack.engine().connect() as conn:
        dispatched = conn.execute(select(ticket_events).where(ticket_events.c.ticket_id == ticket["id"],
                                                              ticket_events.c.kind == "派单")).mappings().one()
    assert (dispatched["data"]["street"], dispatched["data"]["district"]) == (STREET, "150102")


def test_after_dispatch_the_dispatcher_lands_on_their_queue_with_a_notice(stack, web):
    ticket, _, r, disp = _dispatch(stack, web, "如意嘉园小区")
    landing = disp.get(web["url"] + r.headers["Location"], timeout=30)
    assert landing.status_code == 200, r.headers["Location"]
    assert f"{ticket['number']} 已派单" in landing.text


def test_the_timeline_names_every_actor(stack, web):
    ticket, _, _, _ = _dispatch(stack, web, "康乐小区")
    worker, wcsrf = log_in(web, "grid_xlb")  # the street's worker signs: 受理 (resident), 派单, 签收
    r = worker.post(f"{web['url']}/console/tickets/{ticket['id']}/accept", timeout=30, allow_redirects=False,
                    data={"csrf": wcsrf})
    assert r.status_code == 303
    page = worker.get(f"{web['url']}/console/tickets/{ticket['id']}", timeout=30).text
    timeline = page.split("处理过程", 1)[1].split("居民反映", 1)[0]
    assert not re.search(r"(user|system|resident):", timeline), timeline
    assert "派单员小赵" in timeline and "锡林北路网格员小李" in timeline and "居民" in timeline


def test_the_accepted_notice_names_the_street_that_signed(stack, web):
    # routed automatically: lead 市环境卫生管理部门, the street co-handles; the grid worker signs
    chat, _ = file_by_chat(stack, ["三角线社区垃圾站的垃圾满出来了好几天没人管", "没有", "不留", "确认提交"])
    ticket, _ = rows_of(stack, chat.sender)
    assert ticket["lead_queue"] == "sanitation_authority" and ticket["street_code"] == STREET
    worker, csrf = log_in(web, "grid_xlb")
    r = worker.post(f"{web['url']}/console/tickets/{ticket['id']}/accept", timeout=30, allow_redirects=False,
                    data={"csrf": csrf})
    assert r.status_code == 303
    notice = ""
    for _ in range(120):  # the outbox pushes it through Rasa's API within a few notifier ticks
        texts = [e.get("text") or "" for e in asyncio.run(chat._events()) if e.get("event") == "bot"]
        notice = next((t for t in texts if "已由" in t and "签收" in t), "")  # not the filing's 前签收
        if notice:
            break
        time.sleep(0.5)
    assert f"工单 {ticket['number']}）已由新城区 锡林北路街道签收" in notice or \
        f"工单 {ticket['number']}）已由锡林北路街道签收" in notice, notice
    with stack.engine().connect() as conn:
        accept = conn.execute(select(ticket_events).where(ticket_events.c.ticket_id == ticket["id"],
                                                          ticket_events.c.kind == "签收")).mappings().one()
    assert accept["data"]["unit"] == f"street:{STREET}"


# --- 8: the named street and the compound's street disagree --------------------------


def test_a_named_street_that_disagrees_with_the_compound_is_asked_not_replaced(stack):
    chat = Chat(stack)
    first = chat.say("大学西路街道金宇文苑小区门口垃圾堆了好几天没人清理")
    assert first["keys"] == ["utter_ask_location_conflict"]
    offered = [b["payload"] for e in first["bot"] for b in (e.get("data") or {}).get("buttons") or []]
    assert offered == ['/inform{"street":"150105002"}', '/inform{"street":"150105004"}']
    assert "大学西路街道" in said(first) and "大学东路街道" in said(first)
    assert chat.say("大学西路街道")["keys"] == ["utter_ask_photo"]
    for text in ("没有", "不留"):
        chat.say(text)
    chat.say("确认提交")
    ticket, report = rows_of(stack, chat.sender)
    assert (ticket["street_code"], ticket["community_code"], ticket["location_text"]) == \
        ("150105002", None, "赛罕区 大学西路街道 金宇文苑")
