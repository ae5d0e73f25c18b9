"""Who sees residents' personal data in the console (issue 19, "who saw what"): phone numbers
and descriptions masked until a permitted user reveals them with a POST, each reveal a row of
the append-only personal-data view log; 保密 tickets never show the phone or the name to a unit;
QC_PHONE_ROLES decides who may reveal, and a refused reveal is logged (denied); CSV exports leave 保密 tickets out unless an admin
gives a reason, which is logged. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from bot.console import services as svc
from bot.console.config import DEFAULT_PHONE_ROLES, ConsoleConfig, phone_roles_from
from bot.console.tables import personal_data_views
from bot.storage.tables import ticket_reports
from tests.console.helpers import another_client, file, login, make_users, now, post, uow

pytestmark = pytest.mark.asyncio

PHONE = "13847112345"  # the reporter's phone (tests/console/helpers.file)
MASKED = "138****2345"
SAID = "楼下有人遛狗不牵绳，我是王小明，您回电13900001111"
SAID_MASKED = "楼下有人遛狗不牵绳，我是王小明，您回电139****1111"


@pytest.fixture
def phone_roles() -> frozenset[str] | None:
    """QC_PHONE_ROLES as the console reads it; None: the default. A test parametrizes it."""
    return None


@pytest.fixture
def console_config(upload_dir: Path, phone_roles: frozenset[str] | None) -> ConsoleConfig:
    config = ConsoleConfig(notifier=False, upload_dir=upload_dir)
    return config if phone_roles is None else replace(config, phone_roles=phone_roles)


def log_rows(engine: Engine) -> list[tuple]:
    v = personal_data_views
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(v.c.username, v.c.display_name, v.c.role, v.c.ticket_id, v.c.report_id, v.c.field,
                   v.c.export_table, v.c.reason, v.c.denied).order_by(v.c.id))]


def log_times(engine: Engine) -> list[datetime]:
    with engine.connect() as conn:
        return list(conn.execute(select(personal_data_views.c.at).order_by(personal_data_views.c.id)).scalars())


def report_id(engine: Engine, ticket_id: int) -> int:
    with engine.connect() as conn:
        return conn.execute(select(ticket_reports.c.id).where(ticket_reports.c.ticket_id == ticket_id)).scalar_one()


def reveal_path(ticket_id: int, rid: int, field: str) -> str:
    return f"/console/tickets/{ticket_id}/reports/{rid}/reveal/{field}"


# --- revealing on the ticket page ------------------------------------------------


async def test_phone_and_description_are_masked_until_revealed_and_each_reveal_is_logged(
    client: TestClient, engine: Engine
) -> None:
    make_users(engine, ("grid",))
    filed = file(engine, "k1", description=SAID)
    rid = report_id(engine, filed.ticket_id)
    csrf = await login(client, "grid")

    page = await (await client.get(f"/console/tickets/{filed.ticket_id}")).text()
    assert PHONE not in page and "13900001111" not in page
    assert f"电话 {MASKED}" in page
    assert page.count(SAID_MASKED) == 2  # the ticket's description and the report's
    assert f'action="{reveal_path(filed.ticket_id, rid, "phone")}"' in page
    assert f'action="{reveal_path(filed.ticket_id, rid, "description")}"' in page
    queue = await (await client.get("/console/queue")).text()
    assert "13900001111" not in queue and "139****1111" in queue
    assert log_rows(engine) == []  # looking at masked data is not a view

    before = now()
    resp = await post(client, reveal_path(filed.ticket_id, rid, "phone"), csrf)
    assert resp.status == 200
    body = await resp.text()
    assert f"电话 {PHONE}" in body and "13900001111" not in body  # only what was asked for
    assert resp.headers["Cache-Control"] == "no-store"
    assert log_rows(engine) == [("grid", "grid的名字", "worker", filed.ticket_id, rid, "phone", None, None, False)]
    [at] = log_times(engine)
    assert before <= at <= now()

    resp = await post(client, reveal_path(filed.ticket_id, rid, "description"), csrf)
    body = await resp.text()
    assert resp.status == 200 and SAID in body and PHONE not in body
    assert log_rows(engine)[1:] == [("grid", "grid的名字", "worker", filed.ticket_id, rid, "description", None, None, False)]

    # no CSRF token, or a GET: refused, nothing logged
    assert (await post(client, reveal_path(filed.ticket_id, rid, "phone"), "")).status == 403
    assert (await client.get(reveal_path(filed.ticket_id, rid, "phone"))).status == 405
    assert len(log_rows(engine)) == 2


async def test_a_reveal_of_what_is_not_there_is_404_and_not_logged(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "other"))
    filed = file(engine, "k1")
    other_ticket = file(engine, "k2", sender="resident-2")
    rid = report_id(engine, filed.ticket_id)
    csrf = await login(client, "grid")
    assert (await post(client, reveal_path(filed.ticket_id, rid, "address"), csrf)).status == 404
    assert (await post(client, reveal_path(filed.ticket_id, rid + 1, "phone"), csrf)).status == 404  # another ticket's
    assert (await post(client, reveal_path(other_ticket.ticket_id, rid, "phone"), csrf)).status == 404
    async with another_client(client) as c:
        other_csrf = await login(c, "other")  # a street with nothing to do with the ticket
        assert (await post(c, reveal_path(filed.ticket_id, rid, "phone"), other_csrf)).status == 404
    assert log_rows(engine) == []


# --- 保密 ------------------------------------------------------------------------


async def test_a_unit_never_sees_the_phone_or_name_on_a_confidential_ticket(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "dog", "root"))
    filed = file(engine, "k1", description=SAID, confidential=True)
    rid = report_id(engine, filed.ticket_id)
    for user in ("grid", "dog"):  # a street worker, the lead department
        client.session.cookie_jar.clear()
        csrf = await login(client, user)
        page = await (await client.get(f"/console/tickets/{filed.ticket_id}")).text()
        assert PHONE not in page and MASKED not in page and "王小明" not in page and "13900001111" not in page
        assert "电话（保密）" in page and "我是***" in page
        assert "/reveal/" not in page
        assert "王小明" not in await (await client.get("/console/queue")).text()
        for field in ("phone", "description"):
            resp = await post(client, reveal_path(filed.ticket_id, rid, field), csrf)
            assert resp.status == 403, (user, field)
            body = await resp.text()
            assert "无权查看" in body and PHONE not in body and "王小明" not in body
    # each refused attempt is a row: who tried to see what, denied
    assert log_rows(engine) == [
        ("grid", "grid的名字", "worker", filed.ticket_id, rid, "phone", None, None, True),
        ("grid", "grid的名字", "worker", filed.ticket_id, rid, "description", None, None, True),
        ("dog", "dog的名字", "department", filed.ticket_id, rid, "phone", None, None, True),
        ("dog", "dog的名字", "department", filed.ticket_id, rid, "description", None, None, True),
    ]

    client.session.cookie_jar.clear()
    csrf = await login(client, "root")
    page = await (await client.get(f"/console/tickets/{filed.ticket_id}")).text()
    assert f"电话 {MASKED}" in page and PHONE not in page and "王小明" in page  # the admin reads the name
    resp = await post(client, reveal_path(filed.ticket_id, rid, "phone"), csrf)
    assert resp.status == 200 and f"电话 {PHONE}" in await resp.text()
    assert log_rows(engine)[4:] == [("root", "root的名字", "admin", filed.ticket_id, rid, "phone", None, None, False)]
    log = await (await client.get("/console/privacy/views")).text()
    assert log.count("已拒绝") == 4 and "dog的名字（dog）" in log and PHONE not in log and "王小明" not in log


async def test_the_dispatch_centre_may_reveal_a_confidential_phone(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("disp",))
    filed = file(engine, "k1", street=None, confidential=True)  # no street: with the dispatch centre
    rid = report_id(engine, filed.ticket_id)
    csrf = await login(client, "disp")
    resp = await post(client, reveal_path(filed.ticket_id, rid, "phone"), csrf)
    assert resp.status == 200 and f"电话 {PHONE}" in await resp.text()
    assert log_rows(engine) == [("disp", "disp的名字", "dispatcher", filed.ticket_id, rid, "phone", None, None, False)]


# --- the setting -----------------------------------------------------------------


@pytest.mark.parametrize("phone_roles", [frozenset({"dispatcher", "admin"})])
async def test_the_setting_decides_who_may_reveal(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "root"))
    filed = file(engine, "k1", description=SAID)
    rid = report_id(engine, filed.ticket_id)
    csrf = await login(client, "grid")
    page = await (await client.get(f"/console/tickets/{filed.ticket_id}")).text()
    assert f"电话 {MASKED}" in page and PHONE not in page and "/reveal/" not in page
    for field in ("phone", "description"):
        assert (await post(client, reveal_path(filed.ticket_id, rid, field), csrf)).status == 403
    assert log_rows(engine) == [("grid", "grid的名字", "worker", filed.ticket_id, rid, field, None, None, True)
                                for field in ("phone", "description")]
    async with another_client(client) as c:
        root_csrf = await login(c, "root")
        assert (await post(c, reveal_path(filed.ticket_id, rid, "phone"), root_csrf)).status == 200
    assert log_rows(engine)[2:] == [("root", "root的名字", "admin", filed.ticket_id, rid, "phone", None, None, False)]


async def test_qc_phone_roles_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QC_PHONE_ROLES", raising=False)
    assert ConsoleConfig.from_env().phone_roles == DEFAULT_PHONE_ROLES == {"worker", "department", "dispatcher", "admin", "agent"}
    monkeypatch.setenv("QC_PHONE_ROLES", " Dispatcher , admin ")
    assert ConsoleConfig.from_env().phone_roles == {"dispatcher", "admin"}
    assert phone_roles_from("none") == frozenset()
    assert phone_roles_from("  ") == DEFAULT_PHONE_ROLES
    monkeypatch.setenv("QC_PHONE_ROLES", "worker,amdin")
    with pytest.raises(ValueError, match="amdin"):
        ConsoleConfig.from_env()


# --- the log page -------------------------------------------------------------------


async def test_the_view_log_page_is_for_admins_newest_first_and_paged(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "root"))
    filed = file(engine, "k1", description=SAID)
    rid = report_id(engine, filed.ticket_id)
    csrf = await login(client, "grid")
    await post(client, reveal_path(filed.ticket_id, rid, "phone"), csrf)
    await post(client, reveal_path(filed.ticket_id, rid, "description"), csrf)
    assert (await client.get("/console/privacy/views")).status == 404  # not for a worker
    async with another_client(client) as c:
        await login(c, "root")
        page = await (await c.get("/console/privacy/views")).text()
        assert "共 2 条" in page
        assert page.index("描述原文") < page.index("电话</td>")  # newest first
        assert page.count("grid的名字（grid）") == 2 and filed.number in page
        assert PHONE not in page and "13900001111" not in page  # the log says what was seen, never the data
        for _ in range(svc.privacy.LOG_PAGE_SIZE):
            svc.reveal(uow(engine), svc.Principal(2, "root", "root的名字", "admin", frozenset()), filed.ticket_id, rid,
                       "phone", DEFAULT_PHONE_ROLES, now())
        first = await (await c.get("/console/privacy/views")).text()
        second = await (await c.get("/console/privacy/views?page=2")).text()
        assert "1 / 2" in first and "2 / 2" in second
        assert first.count("root的名字（root）") == svc.privacy.LOG_PAGE_SIZE and "grid的名字" not in first
        assert second.count("grid的名字（grid）") == 2
        assert (await c.get("/console/privacy/views?page=x")).status == 400


async def test_a_refused_export_is_logged_denied(engine: Engine) -> None:
    """The route lets only admins export (404 otherwise); the service refuses anyone else too,
    and logs the attempt."""
    make_users(engine, ("grid",))
    with pytest.raises(svc.NotPermitted):
        svc.export(uow(engine), svc.Principal(1, "grid", "grid的名字", "worker", frozenset()), "tickets", None, now())
    assert log_rows(engine) == [("grid", "grid的名字", "worker", None, None, "export", "tickets", None, True)]


async def test_the_view_log_is_append_only(engine: Engine) -> None:
    make_users(engine, ("root",))
    filed = file(engine, "k1")
    rid = report_id(engine, filed.ticket_id)
    svc.reveal(uow(engine), svc.Principal(1, "root", "root的名字", "admin", frozenset()), filed.ticket_id, rid,
               "phone", DEFAULT_PHONE_ROLES, now())
    for statement in (update(personal_data_views).values(reason="x"), delete(personal_data_views)):
        with pytest.raises(DBAPIError, match="personal_data_views is append-only"), engine.begin() as conn:
            conn.execute(statement)
    assert len(log_rows(engine)) == 1


# --- CSV exports --------------------------------------------------------------------


def rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


async def test_exports_leave_confidential_tickets_out_unless_an_admin_gives_a_reason(
    client: TestClient, engine: Engine
) -> None:
    secret = file(engine, "k1", description="我是王小明，回电13811112222", confidential=True)
    open_ = file(engine, "k2", sender="resident-2", description="楼下狗叫，回电13933334444")
    make_users(engine, ("root", "grid"))
    csrf = await login(client, "root")

    plain = await client.get("/console/export/ticket_reports.csv")
    assert plain.status == 200
    assert [(r["ticket_id"], r["phone"], r["description"]) for r in rows(await plain.read())] == [
        (str(open_.ticket_id), PHONE, "楼下狗叫，回电13933334444"),  # not 保密: as today
    ]
    assert [r["id"] for r in rows(await (await client.get("/console/export/tickets.csv")).read())] == [str(open_.ticket_id)]
    events = rows(await (await client.get("/console/export/ticket_events.csv")).read())
    assert events and {r["ticket_id"] for r in events} == {str(open_.ticket_id)}
    assert log_rows(engine) == [
        ("root", "root的名字", "admin", None, None, "export", "ticket_reports", None, False),
        ("root", "root的名字", "admin", None, None, "export", "tickets", None, False),
        ("root", "root的名字", "admin", None, None, "export", "ticket_events", None, False),
    ]

    # a reason: trimmed, required, bounded; refused ones export and log nothing
    for bad in ("", "   ", "理" * (svc.MAX_REASON + 1)):
        resp = await post(client, "/console/export", csrf, table="ticket_reports", reason=bad)
        assert resp.status == 400 and resp.headers["Content-Type"].startswith("text/html")
        assert "13811112222" not in await resp.text()
    assert (await post(client, "/console/export", csrf, table="nope", reason="调阅")).status == 400
    assert (await post(client, "/console/export", "", table="ticket_reports", reason="调阅")).status == 403
    assert len(log_rows(engine)) == 3

    resp = await post(client, "/console/export", csrf, table="ticket_reports", reason="  市纪委调阅\n 11 月工单 ")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    assert 'filename="ticket_reports-' in resp.headers["Content-Disposition"]
    assert [(r["ticket_id"], r["phone"], r["description"]) for r in rows(await resp.read())] == [
        (str(secret.ticket_id), "[保密]", "我是王小明，回电138****2222"),  # included, still redacted
        (str(open_.ticket_id), PHONE, "楼下狗叫，回电13933334444"),
    ]
    assert log_rows(engine)[3:] == [
        ("root", "root的名字", "admin", None, None, "export", "ticket_reports", "市纪委调阅 11 月工单", False),
    ]
    async with another_client(client) as c:
        grid_csrf = await login(c, "grid")
        assert (await post(c, "/console/export", grid_csrf, table="ticket_reports", reason="调阅")).status == 404
    assert len(log_rows(engine)) == 4
