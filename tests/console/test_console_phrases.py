"""常用语 (issue 18): admins keep reply templates per action and category; a worker picks one
on the action form, it fills the text box with the ticket's values (escaped), and the text
the worker sends — edited — is what the ticket's log keeps."""

from __future__ import annotations

import html
import re

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.console.tables import reply_templates
from bot.domain.clock import SHANGHAI
from bot.storage.tables import ticket_events
from tests.console.helpers import another_client, file, login, make_users, post, uow

pytestmark = pytest.mark.asyncio

BODY = "工单{ticket_number}反映的{place}问题已处理完毕<b>请查收</b>，时限{deadline}。"


def rows(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        found = conn.execute(select(reply_templates).order_by(reply_templates.c.id))
        return [{k: v for k, v in r._mapping.items() if k != "updated_at"} for r in found]


async def test_admin_keeps_templates_and_refuses_unknown_placeholders(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root", "grid"))
    csrf = await login(client, "root")
    resp = await post(client, "/console/phrases", csrf, action="resolve", category="dog", title="已处理", body=BODY)
    assert (resp.status, resp.headers["Location"]) == (303, "/console/phrases?saved=1")
    [row] = rows(engine)
    assert row == {"id": row["id"], "action": "resolve", "category": "dog", "title": "已处理", "body": BODY,
                   "updated_by": "root"}
    page = await (await client.get("/console/phrases")).text()
    assert "办结 · 文明养犬 · 已处理" in page and html.escape(BODY, quote=False) in page

    # unknown placeholders and stray braces: refused with the reason, the form kept, nothing saved
    for body, message in (
        ("您好{name}，{ticket_number}已办结{电话}", "未知的占位符 {name}、{电话}：只能使用 {ticket_number}、{place}、{deadline}"),
        ("工单{ticket_number}已办结}", "花括号只能用于占位符，例如 {ticket_number}"),
        ("工单{ticket_number 已办结", "花括号只能用于占位符，例如 {ticket_number}"),
    ):
        resp = await post(client, "/console/phrases", csrf, action="extend", category="", title="坏的", body=body)
        assert resp.status == 400
        text = await resp.text()
        assert html.escape(message, quote=False) in text and html.escape(body, quote=False) in text
    for form, message in (({"action": "reopen"}, "请选择用于办结、退单还是延期"),
                          ({"category": "nope"}, "未知的类别"),
                          ({"title": ""}, "请填写名称（最多64字）"),
                          ({"body": " "}, "请填写内容（最多2000字）")):
        resp = await post(client, "/console/phrases", csrf, **{"action": "resolve", "category": "", "title": "t",
                                                                "body": "b", **form})
        assert resp.status == 400 and message in await resp.text()
    # the same title for the same action and category twice (a re-sent form): one row
    resp = await post(client, "/console/phrases", csrf, action="resolve", category="dog", title="已处理", body="又一条")
    assert resp.status == 409 and "已有同名常用语：办结·文明养犬·已处理" in await resp.text()
    assert len(rows(engine)) == 1

    # change, then delete (twice: the second finds nothing and changes nothing)
    tid = row["id"]
    resp = await post(client, f"/console/phrases/{tid}", csrf, action="return", category="", title="不属本单位",
                      body="工单{ticket_number}不属于本单位职责")
    assert resp.status == 303
    assert rows(engine) == [{"id": tid, "action": "return", "category": "", "title": "不属本单位",
                             "body": "工单{ticket_number}不属于本单位职责", "updated_by": "root"}]
    resp = await post(client, f"/console/phrases/{tid}", csrf, action="return", category="", title="x", body="{oops}")
    assert resp.status == 400 and rows(engine)[0]["title"] == "不属本单位"
    assert (await post(client, "/console/phrases/999999", csrf, action="return", title="x", body="y")).status == 404
    for _ in range(2):
        assert (await post(client, f"/console/phrases/{tid}/delete", csrf)).status == 303
    assert rows(engine) == []

    # other roles: the page does not exist for them
    async with another_client(client) as c:
        worker_csrf = await login(c, "grid")
        assert (await c.get("/console/phrases")).status == 404
        assert (await post(c, "/console/phrases", worker_csrf, action="resolve", title="t", body="b")).status == 404
        assert rows(engine) == []


def textarea(page: str, box: str) -> str:
    found = re.search(rf'<textarea name="\w+" id="{box}"[^>]*>(.*?)</textarea>', page, re.S)
    assert found, box
    return found.group(1)


async def test_worker_picks_a_template_edits_it_and_the_edited_text_is_kept(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root", "grid"))
    ticket = file(engine, "p1")
    csrf = await login(client, "root")
    for action, category, title, body in (("resolve", "dog", "已处理", BODY),
                                          ("resolve", "", "通用办结", "已办结。"),
                                          ("resolve", "noise", "噪声办结", "噪声已处理。"),  # another category
                                          ("return", "", "不属本单位", "工单{ticket_number}不属于本单位职责"),
                                          ("extend", "dog", "需协调", "需协调物业，{deadline}前难以办结")):
        assert (await post(client, "/console/phrases", csrf, action=action, category=category, title=title,
                           body=body)).status == 303
    ids = {r["title"]: r["id"] for r in rows(engine)}
    async with another_client(client) as c:
        worker = await login(c, "grid")
        assert (await post(c, f"/console/tickets/{ticket.ticket_id}/accept", worker)).status == 303
        with uow(engine) as u:
            t = u.tickets.get(ticket.ticket_id)
        deadline = t.finish_deadline().astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
        filled = f"工单{ticket.number}反映的新城区 海拉尔东路街道问题已处理完毕<b>请查收</b>，时限{deadline}。"
        page = await (await c.get(f"/console/tickets/{ticket.ticket_id}")).text()
        # the pick lists carry the filled text, escaped; the other category's template is not offered
        assert f'<option value="{ids["已处理"]}" data-text="{html.escape(filled)}">已处理</option>' in page
        assert f'<option value="{ids["通用办结"]}" data-text="已办结。">通用办结</option>' in page
        assert "噪声办结" not in page
        assert f'data-text="工单{ticket.number}不属于本单位职责">不属本单位</option>' in page
        assert f'data-text="需协调物业，{deadline}前难以办结">需协调</option>' in page
        assert "<b>请查收</b>" not in page and "phrases.js" in page
        assert textarea(page, "resolve-text") == ""
        # without script: ?phrase= fills the box (escaped)
        page = await (await c.get(f"/console/tickets/{ticket.ticket_id}?phrase={ids['已处理']}")).text()
        assert textarea(page, "resolve-text") == html.escape(filled, quote=False)
        assert textarea(page, "return-text") == ""
        # the worker edits the filled text; what is sent is what the log keeps
        edited = filled.replace("<b>请查收</b>", "，现场已恢复")
        assert (await post(c, f"/console/tickets/{ticket.ticket_id}/resolve", worker, result=edited)).status == 303
    with engine.connect() as conn:
        reasons = conn.execute(select(ticket_events.c.reason).where(
            ticket_events.c.ticket_id == ticket.ticket_id, ticket_events.c.kind == "办结")).scalars().all()
    assert reasons == [edited]


async def test_the_picker_is_not_shown_to_who_cannot_act(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root", "grid"))
    ticket = file(engine, "p2")
    csrf = await login(client, "root")
    assert (await post(client, "/console/phrases", csrf, action="resolve", category="", title="通用办结",
                       body="已办结。")).status == 303
    async with another_client(client) as c:
        await login(c, "grid")
        page = await (await c.get(f"/console/tickets/{ticket.ticket_id}?phrase=1")).text()  # not signed for yet
        assert "phrase-pick" not in page and "通用办结" not in page and "phrases.js" not in page
