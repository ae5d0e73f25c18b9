"""Authorization sweep: every route of the web app, enumerated from its router (a route
added later cannot escape), requested with every method it has as anonymous and as every
console role, against a declared table of who may see what.

The console's conventions: anonymous → 303 to the log-in page; a page or ticket a role may
not use → 404 (it does not exist for them); a state-changing request without the session's
CSRF token, or from another origin → 403. Open311 reads are public (no personal data),
filing needs an api_key; the widget is public, its upload needs the widget's header.
"""

from __future__ import annotations

import io
import os
import shutil
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.security.sessionid import new_session_id
from bot.web.widget import SESSION_HEADER, UPLOAD_HEADER
from tests.console.helpers import STREET, csrf_of, file, login, make_users
from tests.console.test_console_web import png_bytes
from tests.security.conftest import row_counts

pytestmark = pytest.mark.asyncio

ANON = "anonymous"
# who: the console user logged in (tests/console/helpers.USERS), or nobody
PRINCIPALS = {
    ANON: None,
    "worker": "grid",  # the street that co-handles the tickets below
    "worker_other_street": "other",  # a street that has nothing to do with them
    "department": "dog",  # the lead department of the tickets below
    "dispatcher": "disp",
    "agent": "desk",  # 坐席: the 转人工 queue only (before admin: see the hand-off action below)
    "admin": "root",
}
ROLES = tuple(PRINCIPALS)
LOGIN = "login"  # 303 to /console/login


def upload_form() -> FormData:
    """A photo as the file field "file": what a dict of bytes made, without aiohttp's deprecation
    (a stream instead would be sent chunked, which changes what an early 429 leaves on the connection)."""
    form = FormData()
    form.add_field("file", png_bytes(), filename="file")
    return form


def every(status: Any) -> dict[str, Any]:
    return {r: status for r in ROLES}


def console_page(ok: Any = 200, *, denied: tuple[str, ...] = (), denied_status: Any = 404, **special: Any) -> dict[str, Any]:
    table = {r: ok for r in ROLES}
    table[ANON] = LOGIN
    for r in denied:
        table[r] = denied_status
    table.update(special)
    return table


NOT_ADMIN = ("worker", "worker_other_street", "department", "dispatcher", "agent")
# may not see the (dispatched, on time) ticket; a 坐席 has no ticket queue
HANDLERS_ONLY = ("worker_other_street", "dispatcher", "agent")
NOT_DISPATCH = ("worker", "worker_other_street", "department", "agent")  # 来电登记, the outbox
NOT_AGENT = ("worker", "worker_other_street", "department", "dispatcher")

# (method, canonical route) → expected status per principal, for a GET/HEAD or a POST
# *with* the session's CSRF token (POSTs are also checked without one, and cross-origin).
# The concrete path used for each route is in PATHS.
EXPECTED: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/health"): every(200),
    # the chat widget: public
    ("GET", "/widget"): every(302),
    ("GET", "/widget/"): every(200),
    ("GET", "/widget/{name}"): every(200),
    ("GET", "/widget/photo/{name}"): every(404),  # only the uploader's signed link shows it
    ("POST", "/widget/upload"): every(201),
    # Open311: reads public, filing needs an api_key (none given here → 403)
    ("GET", "/open311/discovery.json"): every(200),
    ("GET", "/open311/v2/services.json"): every(200),
    ("GET", "/open311/v2/requests.json"): every(200),
    ("GET", "/open311/v2/requests/{request_id}.json"): every(200),
    ("POST", "/open311/v2/requests.json"): every(403),
    # the console
    ("GET", "/console"): console_page(303),
    ("GET", "/console/"): console_page(303),
    ("GET", "/console/login"): every(200),
    ("POST", "/console/login"): every(401),  # public form; wrong password here
    ("POST", "/console/logout"): console_page(303),
    ("GET", "/console/queue"): console_page(200),
    ("GET", "/console/tickets/{ticket_id}"): console_page(200, denied=HANDLERS_ONLY),
    # "reopen" on a ticket that is not resolved: refused (409) for whoever sees it
    ("POST", "/console/tickets/{ticket_id}/{action}"): console_page(409, denied=HANDLERS_ONLY),
    # 询问居民 with no question: refused (400) for whoever may act on the ticket
    ("POST", "/console/tickets/{ticket_id}/ask"): console_page(400, denied=HANDLERS_ONLY),
    # a resident's photo answer: none on this ticket (tests/console/test_console_conversation.py serves one)
    ("GET", "/console/tickets/{ticket_id}/answers/{question_id}/photo"): console_page(404),
    # a resident's phone unmasked (not 保密; every role may by default): exactly who may see the ticket
    ("POST", "/console/tickets/{ticket_id}/reports/{report_id}/reveal/{field}"): console_page(200, denied=HANDLERS_ONLY),
    ("GET", "/console/attachments/{attachment_id}"): console_page(200, denied=HANDLERS_ONLY),
    # a resident's photo on the dispatched ticket: exactly who may see that ticket
    ("GET", "/console/tickets/{ticket_id}/photos/{report_id}"): console_page(200, denied=HANDLERS_ONLY),
    # a photo a resident added (补充): event 0 is 受理, no such photo for anyone (tests/console/test_console_resident_changes.py)
    ("GET", "/console/tickets/{ticket_id}/additions/{index}/photo"): console_page(404),
    ("GET", "/console/notices"): console_page(200),
    ("GET", "/console/static"): every(200),  # css/js only
    ("GET", "/console/dashboard"): console_page(200),
    ("GET", "/console/dashboard.csv"): console_page(200),  # counts and rates of the user's own scope
    ("GET", "/console/export"): console_page(200, denied=NOT_ADMIN),
    ("GET", "/console/export/{table}.csv"): console_page(200, denied=NOT_ADMIN),
    ("POST", "/console/export"): console_page(400, denied=NOT_ADMIN),  # empty form: no table, no reason
    ("GET", "/console/privacy/views"): console_page(200, denied=NOT_ADMIN),
    # a phone caller's data: admins only; an empty form (no number, no reason) is shown again (400)
    ("GET", "/console/privacy/callers"): console_page(200, denied=NOT_ADMIN),
    ("POST", "/console/privacy/callers"): console_page(400, denied=NOT_ADMIN),
    ("POST", "/console/privacy/callers/erase"): console_page(400, denied=NOT_ADMIN),
    ("GET", "/console/outbox"): console_page(200, denied=NOT_DISPATCH),
    ("POST", "/console/outbox/{message_id}/retry"): console_page(303, denied=NOT_DISPATCH),
    ("GET", "/console/calendar"): console_page(200, denied=NOT_ADMIN),
    ("POST", "/console/calendar/preview"): console_page(400, denied=NOT_ADMIN),  # empty form: no year
    ("POST", "/console/calendar/save"): console_page(400, denied=NOT_ADMIN),  # empty form: nothing saved
    ("GET", "/console/calendar/preview"): console_page(303, denied=NOT_ADMIN),  # a reload: back to the page
    ("GET", "/console/calendar/save"): console_page(303, denied=NOT_ADMIN),
    ("GET", "/console/users"): console_page(200, denied=NOT_ADMIN),
    ("POST", "/console/users"): console_page(400, denied=NOT_ADMIN),  # empty form: refused with a message
    ("POST", "/console/users/{username}/password"): console_page(200, denied=NOT_ADMIN),
    ("POST", "/console/users/{username}/active"): console_page(303, denied=NOT_ADMIN),
    ("POST", "/console/api-keys"): console_page(400, denied=NOT_ADMIN),  # no name: refused with a message
    # 来电登记: dispatchers and admins; an empty form is shown again (400), the proposal of nothing is {}
    # 转人工: agents and admins (the agent role's own checks: tests/console/test_console_handoff*.py);
    # 结束会话 on the waiting conversation: the 坐席 closes it (303), the admin after finds it closed (409)
    ("GET", "/console/handoff"): console_page(200, denied=NOT_AGENT),
    ("GET", "/console/handoff/{handoff_id}"): console_page(200, denied=NOT_AGENT),
    ("POST", "/console/handoff/{handoff_id}/{action}"): console_page(303, denied=NOT_AGENT, admin=409),
    # 加入知识库: only for a 咨询 item; the sweep's conversation asked for a person (409)
    ("POST", "/console/handoff/{handoff_id}/knowledge"): console_page(409, denied=NOT_AGENT),
    ("GET", "/console/intake"): console_page(200, denied=NOT_DISPATCH),
    ("POST", "/console/intake"): console_page(400, denied=NOT_DISPATCH),
    # the explainer's proposal: 来电登记 and a 坐席's 代登记
    ("GET", "/console/intake/proposal"): console_page(200, denied=("worker", "worker_other_street", "department")),
    # 常用语: admins only; an empty form is refused (400), ids that do not exist
    ("GET", "/console/phrases"): console_page(200, denied=NOT_ADMIN),
    ("POST", "/console/phrases"): console_page(400, denied=NOT_ADMIN),
    ("POST", "/console/phrases/{template_id}"): console_page(400, denied=NOT_ADMIN),  # empty form: refused first
    ("POST", "/console/phrases/{template_id}/delete"): console_page(303, denied=NOT_ADMIN),  # nothing there: nothing to do
    # retraining: admins only; ids that do not exist, and a training already running (the world holds the lock)
    ("GET", "/console/retraining"): console_page(200, denied=NOT_ADMIN),
    ("POST", "/console/retraining/items/{item_id}/accept"): console_page(404, denied=NOT_ADMIN),
    ("POST", "/console/retraining/items/{item_id}/reject"): console_page(404, denied=NOT_ADMIN),
    ("POST", "/console/retraining/items/{item_id}/undo"): console_page(404, denied=NOT_ADMIN),
    ("POST", "/console/retraining/places"): console_page(400, denied=NOT_ADMIN),  # empty form
    ("POST", "/console/retraining/train"): console_page(409, denied=NOT_ADMIN),  # one training at a time
    ("GET", "/console/retraining/models"): console_page(200, denied=NOT_ADMIN),
    ("GET", "/console/retraining/models/{model_id}"): console_page(404, denied=NOT_ADMIN),
    ("GET", "/console/retraining/models/{model_id}/confusion.png"): console_page(404, denied=NOT_ADMIN),
    ("POST", "/console/retraining/models/{model_id}/activate"): console_page(404, denied=NOT_ADMIN),
    ("POST", "/console/retraining/rollback"): console_page(409, denied=NOT_ADMIN),  # nothing to roll back to
}


def routes_of(app: Any) -> list[tuple[str, str]]:
    """(method, canonical path) of every route the app serves, HEAD folded into GET."""
    found = set()
    for route in app.router.routes():
        method = "GET" if route.method == "HEAD" else route.method
        found.add((method, route.resource.canonical))
    return sorted(found)


class World:
    """The tickets, photo and ids the concrete paths point at."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def path(self, canonical: str) -> str:
        paths = {
            "/widget/{name}": "/widget/widget.js",
            "/widget/photo/{name}": f"/widget/photo/{self.values['photo']}",
            "/open311/v2/requests/{request_id}.json": f"/open311/v2/requests/{self.values['number']}.json",
            "/console/tickets/{ticket_id}": f"/console/tickets/{self.values['ticket']}",
            "/console/tickets/{ticket_id}/{action}": f"/console/tickets/{self.values['ticket']}/reopen",
            "/console/tickets/{ticket_id}/ask": f"/console/tickets/{self.values['ticket']}/ask",
            "/console/tickets/{ticket_id}/answers/{question_id}/photo":
                f"/console/tickets/{self.values['ticket']}/answers/999999/photo",
            "/console/attachments/{attachment_id}": f"/console/attachments/{self.values['attachment']}",
            "/console/tickets/{ticket_id}/photos/{report_id}":
                f"/console/tickets/{self.values['ticket']}/photos/{self.values['report']}",
            "/console/tickets/{ticket_id}/reports/{report_id}/reveal/{field}":
                f"/console/tickets/{self.values['ticket']}/reports/{self.values['report']}/reveal/phone",
            "/console/tickets/{ticket_id}/additions/{index}/photo":
                f"/console/tickets/{self.values['ticket']}/additions/0/photo",
            "/console/static": "/console/static/console.css",
            "/console/handoff/{handoff_id}": f"/console/handoff/{self.values.get('handoff', '1')}",
            "/console/handoff/{handoff_id}/{action}": f"/console/handoff/{self.values.get('handoff', '1')}/close",
            "/console/handoff/{handoff_id}/knowledge": f"/console/handoff/{self.values.get('handoff', '1')}/knowledge",
            "/console/export/{table}.csv": "/console/export/tickets.csv",
            "/console/outbox/{message_id}/retry": "/console/outbox/999999/retry",
            "/console/users/{username}/password": "/console/users/victim/password",
            "/console/users/{username}/active": "/console/users/victim/active",
            "/console/phrases/{template_id}": "/console/phrases/999999",
            "/console/phrases/{template_id}/delete": "/console/phrases/999999/delete",
            "/console/retraining/items/{item_id}/accept": "/console/retraining/items/999999/accept",
            "/console/retraining/items/{item_id}/reject": "/console/retraining/items/999999/reject",
            "/console/retraining/items/{item_id}/undo": "/console/retraining/items/999999/undo",
            "/console/retraining/models/{model_id}": "/console/retraining/models/999999",
            "/console/retraining/models/{model_id}/confusion.png": "/console/retraining/models/999999/confusion.png",
            "/console/retraining/models/{model_id}/activate": "/console/retraining/models/999999/activate",
        }
        return paths.get(canonical, canonical)


async def _world(client: TestClient, engine: Engine) -> World:
    from bot.console import services as svc
    from bot.console.uow import ConsoleUnitOfWork
    from tests.console.helpers import now

    make_users(engine)
    svc.create_user(ConsoleUnitOfWork(engine), "victim", "被重置的账号", "victim-password-1", "worker",
                    (f"street:{STREET}",), now())
    w = World()
    # a resolved ticket with an after-photo (the attachment), and a dispatched one
    resolved = file(engine, "sweep-1", description="楼道堆物")
    csrf = await login(client, "grid")
    tid = resolved.ticket_id
    assert (await client.post(f"/console/tickets/{tid}/accept", data={"csrf": csrf}, allow_redirects=False)).status == 303
    form = FormData()
    form.add_field("csrf", csrf)
    form.add_field("result", "已清理")
    form.add_field("photo", io.BytesIO(png_bytes()), filename="after.png", content_type="image/png")
    assert (await client.post(f"/console/tickets/{tid}/resolve", data=form, allow_redirects=False)).status == 303
    await client.post("/console/logout", data={"csrf": csrf}, allow_redirects=False)
    client.session.cookie_jar.clear()
    dispatched = file(engine, "sweep-2", description="楼下有人遛狗不牵绳", sender="resident-2")
    w.values.update(ticket=str(dispatched.ticket_id), number=dispatched.number, attachment="1")
    up = await client.post("/widget/upload", data=upload_form(), headers={UPLOAD_HEADER: "1", SESSION_HEADER: new_session_id()})
    assert up.status == 201
    w.values["photo"] = (await up.json())["id"]
    # the resident sent that photo with the dispatched complaint (the console reads the same
    # upload folder in production: QC_UPLOAD_DIR)
    from bot.console.http import CONSOLE_CONFIG
    from bot.storage.tables import ticket_reports
    from bot.web.widget import WIDGET

    folder = client.server.app[CONSOLE_CONFIG].upload_dir
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(client.server.app[WIDGET].upload_dir / w.values["photo"], folder / w.values["photo"])
    with engine.begin() as conn:
        conn.execute(ticket_reports.update().where(ticket_reports.c.ticket_id == dispatched.ticket_id)
                     .values(photo=f"/widget/photo/{w.values['photo']}"))
        w.values["report"] = str(conn.execute(select(ticket_reports.c.id).where(
            ticket_reports.c.ticket_id == dispatched.ticket_id)).scalar_one())
    # a resident waiting for a person
    from datetime import time as dtime

    from bot.domain.handoff import ServiceHours
    from bot.services import handoff
    from bot.storage.uow import SqlAlchemyUnitOfWork

    waiting, _ = handoff.request(SqlAlchemyUnitOfWork(engine), "rest:resident-9", "rest", "asked", now(),
                                 ServiceHours(dtime(0, 0), dtime(23, 59, 59)))
    w.values["handoff"] = str(waiting.id)
    # a training "running" in this very process: POST /console/retraining/train must not start another
    from bot.retraining.trainer import acquire_lock

    with engine.begin() as conn:
        acquire_lock(conn, 0, os.getpid(), now())
    return w


async def _as(client: TestClient, principal: str) -> str:
    """Fresh cookies, logged in as the principal's user; the session's CSRF token ('' if anonymous)."""
    client.session.cookie_jar.clear()
    user = PRINCIPALS[principal]
    return await login(client, user) if user else ""


async def _request(client: TestClient, method: str, path: str, csrf: str, origin: str | None = None) -> Any:
    if method == "POST" and path == "/widget/upload":
        return await client.post(path, data=upload_form(), headers={UPLOAD_HEADER: "1", SESSION_HEADER: new_session_id()},
                                 allow_redirects=False)
    if method == "POST" and path == "/console/login":
        page = await client.get("/console/login")
        return await client.post(path, data={"csrf": csrf_of(await page.text()), "username": "grid",
                                             "password": "wrong"}, allow_redirects=False)
    headers = {"Origin": origin} if origin else {}
    data = {"csrf": csrf} if method == "POST" and csrf else None
    return await client.request(method, path, data=data, headers=headers, allow_redirects=False)


def _matches(expected: Any, resp: Any) -> bool:
    if expected == LOGIN:
        return resp.status == 303 and resp.headers["Location"].startswith("/console/login")
    return resp.status == expected


async def test_every_route_is_in_the_table(client: TestClient) -> None:
    served = routes_of(client.server.app)
    missing = [r for r in served if r not in EXPECTED]
    assert not missing, f"routes without a declared expectation (add them to EXPECTED): {missing}"
    stale = [r for r in EXPECTED if r not in served]
    assert not stale, f"expectations for routes the app no longer has: {stale}"


async def test_every_route_as_every_role(client: TestClient, engine: Engine) -> None:
    world = await _world(client, engine)
    app = client.server.app
    routes = routes_of(app)
    # log-out last: it ends the session the other requests use
    routes.sort(key=lambda r: r[1] == "/console/logout")
    failures = []
    checked = 0
    for principal in ROLES:
        for method, canonical in routes:
            path = world.path(canonical)
            expected = EXPECTED[(method, canonical)][principal]
            csrf = await _as(client, principal)
            before = row_counts(engine)
            if method == "POST" and principal != ANON and path.startswith("/console/") and path != "/console/login":
                # without the token, and with the token from another site: 403, nothing changed
                for label, token, origin in (("no csrf", "", None), ("cross-origin", csrf, "https://evil.example")):
                    resp = await _request(client, method, path, token, origin)
                    checked += 1
                    if resp.status != 403:
                        failures.append(f"{principal} {method} {path} ({label}): {resp.status}, expected 403")
                assert row_counts(engine) == before, f"{method} {path} changed rows without a valid CSRF token"
                csrf = await _as(client, principal)  # (a refused POST leaves the session alone; be sure)
            resp = await _request(client, method, path, csrf)
            checked += 1
            if not _matches(expected, resp):
                failures.append(f"{principal} {method} {path}: {resp.status} "
                                f"{resp.headers.get('Location', '')}, expected {expected}")
            if method == "GET":  # HEAD answers like GET, without a body
                head = await client.head(path, allow_redirects=False)
                checked += 1
                if head.status != resp.status:
                    failures.append(f"{principal} HEAD {path}: {head.status}, GET gave {resp.status}")
            assert resp.status < 500
    assert not failures, "\n".join(failures)
    assert checked > 6 * len(routes)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_methods_a_route_does_not_have_change_nothing(client: TestClient, engine: Engine, method: str) -> None:
    make_users(engine, ("root",))
    world = World()
    world.values.update(ticket="1", number="QC-000000-0000", attachment="1", photo="0" * 32 + ".png", report="1")
    for principal in (ANON, "admin"):
        csrf = await _as(client, principal)
        before = row_counts(engine)
        for _, canonical in routes_of(client.server.app):
            path = world.path(canonical)
            resp = await client.request(method, path, data={"csrf": csrf} if csrf else None, allow_redirects=False)
            allowed = {405}
            if path.startswith("/console") and not path.startswith(("/console/login", "/console/static")):
                allowed = {303} if principal == ANON else {403, 405}  # the session gate answers first
            assert resp.status in allowed, f"{principal} {method} {path}: {resp.status}"
        assert row_counts(engine) == before
