"""The console at HTTP level, on SQLite and PostgreSQL: log-in and sessions, CSRF, the
handling cycle, permissions (404 for other queues' tickets), escaping, uploads, errors."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from bot.console.tables import attachments, sessions
from bot.photoclean import clean_photo
from bot.storage.tables import tickets
from tests.console.helpers import OTHER_STREET, PASSWORD, STREET, another_client, file, login, make_users, now, post
from tests.photos import jpeg_with_gps, metadata_of, png_with_text

pytestmark = pytest.mark.asyncio


def png_bytes() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"\x00\xff\x00\x00"  # one red pixel
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


async def text(resp) -> str:  # noqa: ANN001
    return await resp.text()


# --- log-in, sessions, CSRF ------------------------------------------------------


async def test_login_sets_a_safe_cookie_and_wrong_password_is_refused(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid",))
    page = await client.get("/console/login")
    assert page.status == 200
    body = await page.text()
    assert 'name="csrf"' in body
    from tests.console.helpers import csrf_of

    token = csrf_of(body)
    bad = await client.post("/console/login", data={"csrf": token, "username": "grid", "password": "nope"})
    assert bad.status == 401
    assert "用户名或密码错误" in await bad.text()
    unknown = await client.post("/console/login", data={"csrf": token, "username": "ghost", "password": "nope"})
    assert unknown.status == 401 and "用户名或密码错误" in await unknown.text()

    ok = await client.post(
        "/console/login", data={"csrf": token, "username": "grid", "password": PASSWORD}, allow_redirects=False
    )
    assert ok.status == 303 and ok.headers["Location"] == "/console/queue"
    cookie = [v for k, v in ok.headers.items() if k == "Set-Cookie" and v.startswith("qc_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie
    with engine.connect() as conn:
        [row] = conn.execute(select(sessions)).all()
    # The database keeps a hash of the token, never the token itself.
    assert row.id not in cookie and len(row.id) == 64


async def test_secure_cookie_when_configured(engine: Engine, upload_dir: Path) -> None:
    from aiohttp.test_utils import TestServer

    from bot.console.config import ConsoleConfig
    from bot.console.http import CONSOLE_CONFIG, CONSOLE_ENGINE
    from bot.web.app import init_app
    from bot.web.keys import Settings
    from tests.console.helpers import csrf_of

    make_users(engine, ("grid",))
    app = init_app(Settings(database_url="sqlite://"))
    app[CONSOLE_ENGINE] = engine
    app[CONSOLE_CONFIG] = ConsoleConfig(notifier=False, upload_dir=upload_dir, cookie_secure=True)
    async with TestClient(TestServer(app)) as c:
        page = await c.get("/console/login")
        assert "Secure" in page.headers["Set-Cookie"]
        token = csrf_of(await page.text())
        # The client keeps Secure cookies for HTTPS only: hand the login token over by hand.
        ok = await c.post(
            "/console/login",
            data={"csrf": token, "username": "grid", "password": PASSWORD},
            headers={"Cookie": f"qc_login_csrf={token}"},
            allow_redirects=False,
        )
        assert ok.status == 303, await ok.text()
        cookie = [v for k, v in ok.headers.items() if k == "Set-Cookie" and v.startswith("qc_session=")][0]
        assert "Secure" in cookie


async def test_pages_need_a_session(client: TestClient) -> None:
    resp = await client.get("/console/tickets/1", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] in (
        "/console/login?next=%2Fconsole%2Ftickets%2F1",
        "/console/login?next=/console/tickets/1",
    )
    resp = await client.post("/console/tickets/1/accept", data={"csrf": "x"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/console/login")


async def test_login_redirects_only_to_console_pages(client: TestClient, engine: Engine) -> None:
    from tests.console.helpers import csrf_of

    make_users(engine, ("grid",))
    for target, expected in (("https://evil.example/", "/console/queue"), ("//evil.example", "/console/queue"),
                             ("/console/notices", "/console/notices")):
        token = csrf_of(await (await client.get("/console/login")).text())
        resp = await client.post(
            "/console/login",
            data={"csrf": token, "username": "grid", "password": PASSWORD, "next": target},
            allow_redirects=False,
        )
        assert resp.headers["Location"] == expected


async def test_expired_session_goes_back_to_login_with_a_message(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid",))
    await login(client, "grid")
    with engine.begin() as conn:
        conn.execute(update(sessions).values(expires_at=now() - timedelta(seconds=1)))
    resp = await client.get("/console/queue", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console/login?expired=1"
    page = await client.get(resp.headers["Location"])
    assert "登录已过期，请重新登录" in await page.text()
    with engine.connect() as conn:
        assert conn.execute(select(sessions)).all() == []  # the expired session is gone


async def test_logout_ends_the_session(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid",))
    csrf = await login(client, "grid")
    resp = await post(client, "/console/logout", csrf)
    assert resp.status == 303
    again = await client.get("/console/queue", allow_redirects=False)
    assert again.status == 303 and again.headers["Location"].startswith("/console/login")


async def test_forged_forms_get_403_and_change_nothing(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid",))
    ticket = file(engine, "k1")
    csrf = await login(client, "grid")
    path = f"/console/tickets/{ticket.ticket_id}/accept"
    for data, headers in (
        ({}, {}),  # no token
        ({"csrf": "forged"}, {}),  # wrong token
        ({"csrf": csrf}, {"Origin": "https://evil.example"}),  # right token from another site
    ):
        resp = await client.post(path, data=data, headers=headers, allow_redirects=False)
        assert resp.status == 403
        body = await resp.text()
        assert "安全校验未通过" in body and "Traceback" not in body
    with engine.connect() as conn:
        assert conn.execute(select(tickets.c.state)).scalar_one() == "派单"
    # The login form has its own (double-submit) token.
    async with another_client(client) as other:
        resp = await other.post("/console/login", data={"csrf": "x", "username": "grid", "password": PASSWORD})
        assert resp.status == 403


# --- the cycle --------------------------------------------------------------------


async def test_worker_accepts_works_and_resolves_with_photo(
    client: TestClient, engine: Engine, upload_dir: Path
) -> None:
    make_users(engine, ("grid",))
    filed = file(engine, "k1")
    csrf = await login(client, "grid")
    queue = await (await client.get("/console/queue")).text()
    assert filed.number in queue and "剩余" in queue and "文明养犬" in queue

    tid = filed.ticket_id
    resp = await post(client, f"/console/tickets/{tid}/accept", csrf)
    assert resp.status == 303 and resp.headers["Location"] == f"/console/tickets/{tid}?done=accept"
    page = await (await client.get(resp.headers["Location"])).text()
    assert "已签收" in page and "grid的名字" in page

    assert (await post(client, f"/console/tickets/{tid}/work", csrf, reason="")).status == 400
    assert (await post(client, f"/console/tickets/{tid}/work", csrf, reason="已到现场，找到犬主")).status == 303
    assert (await post(client, f"/console/tickets/{tid}/resolve", csrf, result="")).status == 400

    form = FormData()
    form.add_field("csrf", csrf)
    form.add_field("result", "已约谈犬主，承诺遛狗牵绳")
    form.add_field("photo", io.BytesIO(png_bytes()), filename="after.jpg", content_type="image/jpeg")
    resp = await client.post(f"/console/tickets/{tid}/resolve", data=form, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    page = await (await client.get(f"/console/tickets/{tid}")).text()
    assert "办结" in page and "已约谈犬主" in page and "已到现场，找到犬主" in page
    # Timeline: who, when, why.
    for kind in ("受理", "派单", "签收", "办理", "办结"):
        assert f"<strong>{kind}</strong>" in page
    [stored] = list(upload_dir.iterdir())
    assert stored.suffix == ".png" and len(stored.stem) == 32  # random name, real type
    photo = await client.get("/console/attachments/1")
    assert photo.status == 200 and photo.headers["Content-Type"] == "image/png"
    assert photo.headers["X-Content-Type-Options"] == "nosniff"
    assert await photo.read() == clean_photo(png_bytes(), "png")  # re-encoded from its pixels
    with engine.connect() as conn:
        assert conn.execute(select(tickets.c.state)).scalar_one() == "办结"


async def test_two_people_cannot_both_accept(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "grid2"))
    filed = file(engine, "k1")
    first = await login(client, "grid")
    async with another_client(client) as other:
        second = await login(other, "grid2")
        page_for_second = await (await other.get(f"/console/tickets/{filed.ticket_id}")).text()
        assert "签收</button>" in page_for_second
        assert (await post(client, f"/console/tickets/{filed.ticket_id}/accept", first)).status == 303
        late = await post(other, f"/console/tickets/{filed.ticket_id}/accept", second)
        assert late.status == 409
        assert "已被 grid的名字 签收" in await late.text()
        # …and the second person cannot work on it either.
        resp = await post(other, f"/console/tickets/{filed.ticket_id}/resolve", second, result="x")
        assert resp.status == 409 and "由 grid的名字 办理" in await resp.text()


async def test_return_reject_redispatch_and_escalation(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "other", "disp"))
    filed = file(engine, "k1")
    tid = filed.ticket_id
    worker = await login(client, "grid")
    async with another_client(client) as disp_client, another_client(client) as other_client:
        disp = await login(disp_client, "disp")
        # The dispatcher does not see a routed, on-time ticket of another queue.
        assert (await disp_client.get(f"/console/tickets/{tid}")).status == 404

        await post(client, f"/console/tickets/{tid}/accept", worker)
        assert (await post(client, f"/console/tickets/{tid}/return", worker, reason=" ")).status == 400
        assert (await post(client, f"/console/tickets/{tid}/return", worker, reason="不在本街道")).status == 303
        returned = await (await disp_client.get("/console/queue?view=returned")).text()
        assert filed.number in returned
        assert (await post(disp_client, f"/console/tickets/{tid}/reject_return", disp, reason="")).status == 400
        assert (await post(disp_client, f"/console/tickets/{tid}/reject_return", disp, reason="属于本街道")).status == 303
        page = await (await client.get(f"/console/tickets/{tid}")).text()
        assert "签收</span>" in page or "state-accepted" in page

        # Return twice more: the third return escalates (提级) and cannot be rejected.
        await post(client, f"/console/tickets/{tid}/return", worker, reason="确实不在本街道")
        await post(disp_client, f"/console/tickets/{tid}/reject_return", disp, reason="请再核实")
        await post(client, f"/console/tickets/{tid}/return", worker, reason="第三次退单")
        page = await (await disp_client.get(f"/console/tickets/{tid}")).text()
        assert "提级" in page and "reject_return" not in page
        resp = await post(disp_client, f"/console/tickets/{tid}/reject_return", disp, reason="再驳回")
        assert resp.status == 409 and "已提级" in await resp.text()

        # 改派 to another street: the other worker now sees it, the first one no longer.
        resp = await post(
            disp_client, f"/console/tickets/{tid}/redispatch", disp, lead="urban_management", street=OTHER_STREET
        )
        assert resp.status == 303
        await login(other_client, "other")
        assert (await other_client.get(f"/console/tickets/{tid}")).status == 200
        assert (await client.get(f"/console/tickets/{tid}")).status == 404


async def test_dispatcher_dispatches_from_the_dispatch_centre(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("disp", "dog"))
    filed = file(engine, "k1", street=None)
    disp = await login(client, "disp")
    queue = await (await client.get("/console/queue")).text()  # dispatchers start on 待派单
    assert filed.number in queue
    bad = await post(client, f"/console/tickets/{filed.ticket_id}/dispatch", disp, lead="dispatch_center")
    assert bad.status == 400
    ok = await post(client, f"/console/tickets/{filed.ticket_id}/dispatch", disp, lead="police_dog", street=STREET)
    assert ok.status == 303
    async with another_client(client) as dog_client:
        await login(dog_client, "dog")
        page = await (await dog_client.get(f"/console/tickets/{filed.ticket_id}")).text()
        assert "市公安局养犬管理" in page and "海拉尔东路街道" in page and "签收</button>" in page


async def test_extension_request_and_approval(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "disp"))
    filed = file(engine, "k1")
    tid = filed.ticket_id
    worker = await login(client, "grid")
    await post(client, f"/console/tickets/{tid}/accept", worker)
    assert (await post(client, f"/console/tickets/{tid}/extend", worker, days="2", reason="")).status == 400
    assert (await post(client, f"/console/tickets/{tid}/extend", worker, days="99", reason="x")).status == 400
    assert (await post(client, f"/console/tickets/{tid}/extend", worker, days="2", reason="需协调物业")).status == 303
    with engine.connect() as conn:
        before = conn.execute(select(tickets.c.deadline_at)).scalar_one()
    async with another_client(client) as disp_client:
        disp = await login(disp_client, "disp")
        # The dispatch centre sees the request (not otherwise its ticket) and grants it.
        page = await (await disp_client.get("/console/queue?view=extension")).text()
        assert filed.number in page and "延期申请" in page
        bad = await post(disp_client, f"/console/tickets/{tid}/approve_extension", disp, days="two")
        assert bad.status == 400 and "1–30" in await bad.text()
        assert (await post(disp_client, f"/console/tickets/{tid}/approve_extension", disp, days="2")).status == 303
        page = await (await disp_client.get(f"/console/tickets/{tid}")).text()
        assert "批准延期" in page and "approve_extension" not in page  # granted: no longer pending
    with engine.connect() as conn:
        after = conn.execute(select(tickets.c.deadline_at)).scalar_one()
    assert after - before >= timedelta(days=2)


# --- permissions ------------------------------------------------------------------


async def test_other_street_gets_404_for_everything(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "other"))
    mine = file(engine, "k1")
    csrf = await login(client, "other")
    queue = await (await client.get("/console/queue?view=all")).text()
    assert mine.number not in queue
    for path in (f"/console/tickets/{mine.ticket_id}", "/console/tickets/999999", "/console/attachments/1"):
        resp = await client.get(path)
        assert resp.status == 404
        body = await resp.text()
        assert mine.number not in body and "遛狗" not in body
    for action in ("accept", "resolve", "return", "dispatch"):
        resp = await post(client, f"/console/tickets/{mine.ticket_id}/{action}", csrf, reason="x", result="x")
        assert resp.status == 404
    with engine.connect() as conn:
        assert conn.execute(select(tickets.c.state)).scalar_one() == "派单"


async def test_roles_see_their_queues(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("dog", "root", "disp"))
    routed = file(engine, "k1")
    manual = file(engine, "k2", street=None, sender="r2")
    overdue = file(engine, "k3", sender="r3", at=routed_time_ago(days=10), street=OTHER_STREET)
    seen = {}
    for name in ("dog", "root", "disp"):
        async with another_client(client) as c:
            await login(c, name)
            seen[name] = {
                n for n, t in ((routed.number, routed), (manual.number, manual), (overdue.number, overdue))
                if (await c.get(f"/console/tickets/{t.ticket_id}")).status == 200
            }
    assert seen["dog"] == {routed.number, overdue.number}  # police_dog leads both routed tickets
    assert seen["root"] == {routed.number, manual.number, overdue.number}
    assert seen["disp"] == {manual.number, overdue.number}  # the dispatch centre's and the overdue one


def routed_time_ago(days: int):  # noqa: ANN201
    from tests.console.helpers import now

    return now() - timedelta(days=days)


async def test_queue_orders_by_deadline_and_highlights(client: TestClient, engine: Engine) -> None:
    from bot.domain.model import DispatchClass

    make_users(engine, ("grid",))
    later = file(engine, "k1")
    late = file(engine, "k2", sender="r2", at=routed_time_ago(days=5))
    soon = file(engine, "k3", sender="r3", cls=DispatchClass.URGENT, at=routed_time_ago(days=0) - timedelta(minutes=50))
    await login(client, "grid")
    page = await (await client.get("/console/queue")).text()
    order = [page.index(x.number) for x in (late, soon, later)]
    assert order == sorted(order)
    assert "urgency-overdue" in page and "urgency-soon" in page and "urgency-ok" in page
    assert "超期" in page


async def test_merged_reports_show_their_count(client: TestClient, engine: Engine) -> None:
    from bot.console.uow import ConsoleUnitOfWork
    from bot.domain.model import ComplaintDraft
    from bot.services.tickets import file_complaint
    from tests.console.helpers import now, route

    make_users(engine, ("grid",))
    for i in range(3):
        d = ComplaintDraft(f"r{i}", "rest", "dog", "遛狗不牵绳", "公主府社区", None, None, False, f"m{i}")
        file_complaint(ConsoleUnitOfWork(engine), d, route(), now())
    await login(client, "grid")
    queue = await (await client.get("/console/queue")).text()
    assert "并单×3" in queue
    page = await (await client.get("/console/tickets/1")).text()
    assert "3（并单）" in page


# --- escaping, uploads, errors ------------------------------------------------------

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


async def test_script_in_a_complaint_is_escaped_everywhere(client: TestClient, engine: Engine) -> None:
    from bot.console import services as svc
    from bot.console.uow import ConsoleUnitOfWork
    from tests.console.helpers import now

    make_users(engine, ("grid", "root"))
    filed = file(engine, "k1", description=EVIL)
    csrf = await login(client, "grid")
    await post(client, f"/console/tickets/{filed.ticket_id}/accept", csrf)
    await post(client, f"/console/tickets/{filed.ticket_id}/return", csrf, reason=EVIL)
    svc.process_feed(ConsoleUnitOfWork(engine), now())
    async with another_client(client) as root:
        await login(root, "root")
        pages = [
            await client.get("/console/queue"),
            await client.get(f"/console/tickets/{filed.ticket_id}"),
            await root.get("/console/queue?view=all"),
            await root.get(f"/console/tickets/{filed.ticket_id}"),
            await root.get("/console/notices"),
            await root.get("/console/outbox"),
            await root.get("/console/dashboard"),
        ]
        for resp in pages:
            assert resp.status == 200
            body = await resp.text()
            assert "<script>alert" not in body and "<img src=x" not in body, resp.url
            assert "Content-Security-Policy" in resp.headers
        ticket_page = await (await root.get(f"/console/tickets/{filed.ticket_id}")).text()
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in ticket_page
        csv = await root.get("/console/export/tickets.csv")
        assert csv.status == 200  # CSV is data, not HTML: kept verbatim for the spreadsheet


@pytest.mark.parametrize("kind", ["jpeg-gps-exif", "png-text-chunks"])
async def test_after_photo_is_stored_without_metadata(
    client: TestClient, engine: Engine, upload_dir: Path, kind: str
) -> None:
    data, ext = (jpeg_with_gps(), "jpg") if kind == "jpeg-gps-exif" else (png_with_text(), "png")
    assert metadata_of(data)  # GPS, device, comment, XMP / text chunks going in
    make_users(engine, ("grid",))
    filed = file(engine, "k1")
    csrf = await login(client, "grid")
    await post(client, f"/console/tickets/{filed.ticket_id}/accept", csrf)
    form = FormData()
    form.add_field("csrf", csrf)
    form.add_field("result", "已处理")
    form.add_field("photo", io.BytesIO(data), filename="after." + ext, content_type="image/jpeg")
    resp = await client.post(f"/console/tickets/{filed.ticket_id}/resolve", data=form, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    [stored] = list(upload_dir.iterdir())
    assert stored.suffix == "." + ext and metadata_of(stored.read_bytes()) == []
    served = await (await client.get("/console/attachments/1")).read()
    assert served == stored.read_bytes()
    with engine.connect() as conn:  # size and hash describe the stored (clean) file
        row = conn.execute(select(attachments.c.size, attachments.c.sha256)).one()
    assert row == (len(served), hashlib.sha256(served).hexdigest())


async def test_upload_type_and_size_are_checked(client: TestClient, engine: Engine, upload_dir: Path) -> None:
    make_users(engine, ("grid",))
    filed = file(engine, "k1")
    csrf = await login(client, "grid")
    await post(client, f"/console/tickets/{filed.ticket_id}/accept", csrf)

    async def resolve(data: bytes, name: str = "a.png", ctype: str = "image/png"):  # noqa: ANN202
        form = FormData()
        form.add_field("csrf", csrf)
        form.add_field("result", "已处理")
        form.add_field("photo", io.BytesIO(data), filename=name, content_type=ctype)
        return await client.post(f"/console/tickets/{filed.ticket_id}/resolve", data=form, allow_redirects=False)

    fake = await resolve(b"<html><script>alert(1)</script></html>", "x.png")
    assert fake.status == 400 and "只接受 JPEG、PNG 或 WebP" in await fake.text()
    broken = await resolve(png_bytes()[:40], "x.png")  # a PNG cut short
    assert broken.status == 400 and "照片无法读取" in await broken.text()
    big = await resolve(png_bytes() + b"\0" * (5 * 1024 * 1024))
    assert big.status == 400 and "不能超过 5 MB" in await big.text()
    huge = await resolve(png_bytes() + b"\0" * (9 * 1024 * 1024))
    assert huge.status == 413 and "文件太大" in await huge.text()
    assert not upload_dir.exists() or list(upload_dir.iterdir()) == []  # nothing kept
    with engine.connect() as conn:
        assert conn.execute(select(tickets.c.state)).scalar_one() == "签收"


async def test_clean_error_pages(client: TestClient, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.console import services as svc

    make_users(engine, ("grid",))
    await login(client, "grid")
    missing = await client.get("/console/no-such-page")
    assert missing.status == 404 and "页面不存在" in await missing.text()
    assert (await client.get("/console/tickets/abc")).status == 404
    assert (await client.get("/console/queue?view=bogus")).status == 404

    def boom(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("secret internals")

    monkeypatch.setattr(svc, "queue_page", boom)
    resp = await client.get("/console/queue")
    assert resp.status == 500
    body = await resp.text()
    assert "系统出错了" in body and "secret internals" not in body and "Traceback" not in body


async def test_password_guessing_is_throttled(client: TestClient, engine: Engine) -> None:
    from tests.console.helpers import csrf_of

    make_users(engine, ("grid",))
    for _ in range(5):
        token = csrf_of(await (await client.get("/console/login")).text())
        resp = await client.post("/console/login", data={"csrf": token, "username": "grid", "password": "guess"})
        assert resp.status == 401
    token = csrf_of(await (await client.get("/console/login")).text())
    resp = await client.post("/console/login", data={"csrf": token, "username": "GRID", "password": PASSWORD})
    assert resp.status == 429 and "次数过多" in await resp.text()  # even the right password, for now


async def test_login_throttle_counts_the_client_behind_our_proxy(engine: Engine, upload_dir: Path) -> None:
    """Behind nginx every request comes from the proxy: the throttle must count the
    forwarded client, or one guesser locks every user of that name out for everyone; a
    client that is not our proxy cannot pick its own address with X-Forwarded-For."""
    from aiohttp.test_utils import TestServer

    from bot.console.config import ConsoleConfig
    from bot.console.http import CONSOLE_CONFIG, CONSOLE_ENGINE
    from bot.web.app import init_app
    from bot.web.keys import Settings
    from tests.console.helpers import csrf_of

    make_users(engine, ("grid",))

    async def attempt(c: TestClient, password: str, client_ip: str) -> int:
        token = csrf_of(await (await c.get("/console/login")).text())
        resp = await c.post("/console/login", data={"csrf": token, "username": "grid", "password": password},
                            headers={"X-Forwarded-For": f"198.51.100.9, {client_ip}"}, allow_redirects=False)
        return resp.status

    for trusted, expect_neighbour in ((("127.0.0.1",), 303), ((), 429)):
        app = init_app(Settings(database_url="sqlite://"))
        app[CONSOLE_ENGINE] = engine
        app[CONSOLE_CONFIG] = ConsoleConfig(notifier=False, upload_dir=upload_dir, trusted_proxies=trusted)
        async with TestClient(TestServer(app)) as c:
            assert [await attempt(c, "guess", "203.0.113.7") for _ in range(5)] == [401] * 5
            assert await attempt(c, PASSWORD, "203.0.113.7") == 429  # the guesser stays throttled
            # trusted proxy: another client is not; untrusted peer: its header counts for nothing
            assert await attempt(c, PASSWORD, "203.0.113.8") == expect_neighbour
