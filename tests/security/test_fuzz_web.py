"""Fuzzing the web app in-process (aiohttp test client; SQLite and PostgreSQL): the console's
forms and query strings, Open311 filing and search, the widget's photo upload. Oversized,
malformed, non-UTF-8, wrong types, huge numbers, control characters, NUL, lone surrogates,
full-width text. Every answer: no 5xx; a refusal (4xx) changes no row; an accepted value is
stored exactly as sent (no garbage)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.console import admin
from bot.console.uow import ConsoleUnitOfWork
from bot.security.ratelimit import RateLimiter
from bot.security.sessionid import new_session_id
from bot.storage.tables import ticket_events, tickets
from bot.web.widget import SESSION_HEADER, UPLOAD_HEADER, UPLOAD_LIMITER
from tests.console.helpers import csrf_of, file, login, make_users
from tests.console.test_console_web import png_bytes
from tests.photos import plain
from tests.security.conftest import FORM, NASTY_TEXT, form_body, hostile_text, make_app, row_counts

pytestmark = pytest.mark.asyncio

FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest_asyncio.fixture
async def fuzz_client(any_engine: Engine, tmp_path: Path, widget_config: Any):  # noqa: ANN201
    app = make_app(any_engine, tmp_path, widget_config)
    app[UPLOAD_LIMITER] = RateLimiter(10**9, 60, "fuzz", redis_url="")  # the flood test is elsewhere
    async with TestClient(TestServer(app)) as c:
        yield c


def _no_5xx(status: int, what: str) -> None:
    assert status < 500, f"{what}: {status}"


# --- the console ------------------------------------------------------------------


@FUZZ
@given(username=hostile_text(), password=hostile_text(), next_=hostile_text())
async def test_login_form(fuzz_client: TestClient, any_engine: Engine, username: str, password: str, next_: str) -> None:
    if not getattr(fuzz_client, "_fuzz_users", False):
        make_users(any_engine, ("grid",))
        fuzz_client._fuzz_users = True
    fuzz_client.session.cookie_jar.clear()
    page = await fuzz_client.get("/console/login")
    token = csrf_of(await page.text())
    before = row_counts(any_engine)
    resp = await fuzz_client.post("/console/login", data=form_body(
        {"csrf": token, "username": username, "password": password, "next": next_}), headers=FORM,
        allow_redirects=False)
    _no_5xx(resp.status, f"login {username!r}")
    assert resp.status in (400, 401, 429), resp.status  # never a session for a wrong password
    assert row_counts(any_engine) == before


ACTION_FIELDS = ("reason", "result", "days", "lead", "street", "note", "csrf_extra")


@FUZZ
@given(action=hs.sampled_from(["work", "extend", "return", "resolve", "dispatch", "accept", "nope", "../x", "%00"]),
       fields=hs.dictionaries(hs.sampled_from(ACTION_FIELDS), hostile_text(), max_size=4))
async def test_ticket_action_forms(fuzz_client: TestClient, any_engine: Engine, action: str,
                                   fields: dict[str, str]) -> None:
    import uuid

    from sqlalchemy import func

    csrf = getattr(fuzz_client, "_fuzz_csrf", None)
    if csrf is None:
        make_users(any_engine, ("grid",))
        csrf = fuzz_client._fuzz_csrf = await login(fuzz_client, "grid")
    # every example on a fresh ticket grid has accepted (the outcome must not depend on the last one)
    filed = file(any_engine, f"fuzz-{uuid.uuid4().hex}")
    ticket_id = filed.ticket_id
    resp = await fuzz_client.post(f"/console/tickets/{ticket_id}/accept", data={"csrf": csrf}, allow_redirects=False)
    assert resp.status == 303
    before = row_counts(any_engine)
    resp = await fuzz_client.post(f"/console/tickets/{ticket_id}/{action}", data=form_body({**fields, "csrf": csrf}),
                                  headers=FORM, allow_redirects=False)
    _no_5xx(resp.status, f"{action} {fields!r}")
    if resp.status >= 400:
        assert row_counts(any_engine) == before
        return
    assert resp.status == 303 and action in ("work", "extend", "return", "resolve"), (action, fields, resp.status)
    # accepted: exactly one new event, its reason exactly the (stripped) text sent
    with any_engine.connect() as conn:
        last = conn.execute(select(ticket_events).where(ticket_events.c.ticket_id == ticket_id)
                            .order_by(ticket_events.c.seq.desc()).limit(1)).one()
        events = conn.execute(select(func.count()).select_from(ticket_events)).scalar_one()
    assert events == before["ticket_events"] + 1
    sent = (fields.get("result") or "").strip() if action == "resolve" else ""
    assert last.reason == (sent or fields["reason"].strip())


@FUZZ
@given(username=hostile_text(), display=hostile_text(), role=hs.one_of(hs.sampled_from(["worker", "admin"]), hostile_text()),
       queues=hs.lists(hostile_text(), max_size=3), key_name=hostile_text())
async def test_admin_forms(fuzz_client: TestClient, any_engine: Engine, username: str, display: str, role: str,
                           queues: list[str], key_name: str) -> None:
    csrf = getattr(fuzz_client, "_fuzz_csrf", None)
    if csrf is None:
        make_users(any_engine, ("root",))
        csrf = fuzz_client._fuzz_csrf = await login(fuzz_client, "root")
    before = row_counts(any_engine)
    body = form_body({"csrf": csrf, "username": username, "display_name": display, "role": role})
    for q in queues:
        body += b"&" + form_body({"queues": q})
    resp = await fuzz_client.post("/console/users", data=body, headers=FORM, allow_redirects=False)
    _no_5xx(resp.status, f"users {username!r} {role!r} {queues!r}")
    after = row_counts(any_engine)
    if resp.status >= 400:
        assert after == before
    else:
        assert resp.status == 200 and after["users"] == before["users"] + 1
    before = after
    resp = await fuzz_client.post("/console/api-keys", data=form_body({"csrf": csrf, "name": key_name}),
                                  headers=FORM, allow_redirects=False)
    _no_5xx(resp.status, f"api key {key_name!r}")
    if resp.status >= 400:
        assert row_counts(any_engine) == before
    for path in ("/console/users/%s/password", "/console/users/%s/active"):
        from urllib.parse import quote

        resp = await fuzz_client.post(path % quote(username.encode("utf-8", "surrogatepass"), safe=""),
                                      data=form_body({"csrf": csrf, "active": display}), headers=FORM,
                                      allow_redirects=False)
        _no_5xx(resp.status, f"{path} {username!r}")


@FUZZ
@given(params=hs.dictionaries(hs.sampled_from(["view", "page", "month", "status", "next", "done", "w_sla", "x",
                                               "number", "phone", "q", "category", "place", "lead", "state",
                                               "overdue", "supervised", "from", "to"]),
                              hostile_text(), max_size=3),
       path=hs.sampled_from(["/console/queue", "/console/dashboard", "/console/outbox", "/console/notices",
                             "/console/tickets/1", "/console/tickets/99999999999999999999", "/console/export/x.csv",
                             "/console/export/tickets.csv",
                             "/console/attachments/00000000000000000000001", "/console/login"]))
async def test_console_query_strings(fuzz_client: TestClient, any_engine: Engine, params: dict[str, str],
                                     path: str) -> None:
    if not getattr(fuzz_client, "_fuzz_csrf", None):
        make_users(any_engine, ("root",))
        fuzz_client._fuzz_csrf = await login(fuzz_client, "root")
    from urllib.parse import quote

    qs = "&".join(f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'))}" for k, v in params.items())
    before = row_counts(any_engine)
    resp = await fuzz_client.get(f"{path}?{qs}", allow_redirects=False)
    _no_5xx(resp.status, f"{path}?{qs}")
    if path == "/console/export/tickets.csv" and resp.status == 200:
        before["personal_data_views"] += 1  # every export is logged (docs/privacy.md), nothing else changes
    assert row_counts(any_engine) == before or path == "/console/notices"  # notices marks seen


# --- Open311 --------------------------------------------------------------------------


@FUZZ
@given(values=hs.dictionaries(
    hs.sampled_from(["service_code", "address_string", "description", "phone", "media_url", "lat", "long",
                     "account_id", "email", "device_id"]),
    hs.one_of(hostile_text(), hs.integers(min_value=-(10**40), max_value=10**40), hs.floats(allow_nan=True),
              hs.booleans(), hs.none(), hs.lists(hs.integers(), max_size=2),
              hs.dictionaries(hs.text(max_size=3), hs.integers(), max_size=2)),
    max_size=6),
    valid_code=hs.booleans())
async def test_open311_post_json(fuzz_client: TestClient, any_engine: Engine, values: dict[str, Any],
                                 valid_code: bool) -> None:
    key = getattr(fuzz_client, "_fuzz_key", None)
    if key is None:
        key = fuzz_client._fuzz_key = admin.create_api_key(ConsoleUnitOfWork(any_engine), "fuzzer")
    body = {"api_key": key, **values}
    if valid_code:
        body.setdefault("service_code", "dog")
    raw = json.dumps(body, ensure_ascii=True)  # "\ud800" travels as JSON's escape, as an attacker would send it
    before = row_counts(any_engine)
    resp = await fuzz_client.post("/open311/v2/requests.json", data=raw, headers={"Content-Type": "application/json"})
    _no_5xx(resp.status, f"open311 {raw[:300]}")
    answer = await resp.json()
    if resp.status != 201:
        assert resp.status in (400, 403, 409) and answer[0]["code"] == resp.status
        assert row_counts(any_engine) == before
        return
    after = row_counts(any_engine)
    assert after["tickets"] - before["tickets"] + after["ticket_reports"] - before["ticket_reports"] >= 1
    with any_engine.connect() as conn:
        number = answer[0]["service_request_id"]
        row = conn.execute(select(tickets).where(tickets.c.number == number)).one()
    if after["tickets"] == before["tickets"] + 1:  # a new ticket (not merged): exactly what was sent
        assert row.description == str(values["description"]).strip()


@FUZZ
@given(body=hs.one_of(hs.binary(max_size=400), hs.sampled_from([
    b"", b"{", b"[]", b"null", b'"x"', b"\xff\xfe{\x00}\x00", b'{"api_key": 1e999999}', b'{"a": ' * 500,
    "{\"description\": \"\u4f60\"}".encode("gbk"), b"\xef\xbb\xbf{}", b"a=1&a=2&api_key=%00",
])), content_type=hs.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain",
                                   "multipart/form-data; boundary=xx", "application/json; charset=gbk"]))
async def test_open311_post_raw_bodies(fuzz_client: TestClient, any_engine: Engine, body: bytes,
                                       content_type: str) -> None:
    before = row_counts(any_engine)
    resp = await fuzz_client.post("/open311/v2/requests.json", data=body, headers={"Content-Type": content_type})
    _no_5xx(resp.status, f"{content_type} {body[:100]!r}")
    assert 400 <= resp.status < 500
    assert row_counts(any_engine) == before


@FUZZ
@given(params=hs.dictionaries(hs.sampled_from(["service_request_id", "service_code", "start_date", "end_date",
                                               "status", "jurisdiction_id"]), hostile_text(), max_size=4),
       number=hostile_text())
async def test_open311_search(fuzz_client: TestClient, any_engine: Engine, params: dict[str, str], number: str) -> None:
    from urllib.parse import quote

    qs = "&".join(f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'))}" for k, v in params.items())
    resp = await fuzz_client.get(f"/open311/v2/requests.json?{qs}")
    _no_5xx(resp.status, qs)
    assert resp.status in (200, 400)
    resp = await fuzz_client.get(f"/open311/v2/requests/{quote(number.encode('utf-8', 'surrogatepass'), safe='')}.json")
    _no_5xx(resp.status, number)
    assert resp.status in (200, 400, 404)


# --- the widget's upload -----------------------------------------------------------------


@FUZZ
@given(head=hs.sampled_from([plain("JPEG"), plain("PNG"), b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBP", b"GIF89a", b"<svg",
                             b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'>]><x>&a;</x>"]),
       tail=hs.binary(max_size=300), filename=hostile_text(), ctype=hostile_text(), field=hs.sampled_from(["file", "photo", "x"]))
async def test_widget_upload_multipart(fuzz_client: TestClient, widget_config: Any, head: bytes, tail: bytes,
                                       filename: str, ctype: str, field: str) -> None:
    data = head + tail
    form = FormData()
    safe_name = filename.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    form.add_field(field, io.BytesIO(data), filename=safe_name or "x",
                   content_type=ctype.encode("ascii", "replace").decode() or "application/octet-stream")
    before = sorted(widget_config.upload_dir.glob("*")) if widget_config.upload_dir.exists() else []
    resp = await fuzz_client.post("/widget/upload", data=form, headers={UPLOAD_HEADER: "1", SESSION_HEADER: new_session_id()})
    _no_5xx(resp.status, f"{field} {data[:40]!r}")
    after = sorted(widget_config.upload_dir.glob("*")) if widget_config.upload_dir.exists() else []
    from bot.photoclean import PhotoUnreadable, clean_photo
    from bot.web.widget import sniff_image

    ext = sniff_image(data[:16]) if field == "file" and data else None
    try:  # a photo is kept only when it decodes; stored re-encoded without metadata
        expected = clean_photo(data, ext) if ext else None
    except PhotoUnreadable:
        expected = None
    if expected is not None:
        assert resp.status == 201 and len(after) == len(before) + 1
        stored = widget_config.upload_dir / (await resp.json())["id"]
        assert stored.read_bytes() == expected
    else:
        assert resp.status in (400, 415) and after == before


@FUZZ
@given(body=hs.binary(max_size=500), ctype=hs.sampled_from([
    "multipart/form-data; boundary=b", "multipart/form-data", "image/jpeg", "text/plain", "",
    "multipart/form-data; boundary=" + "x" * 300]))
async def test_widget_upload_raw_bodies(fuzz_client: TestClient, widget_config: Any, body: bytes, ctype: str) -> None:
    resp = await fuzz_client.post("/widget/upload", data=body, headers={UPLOAD_HEADER: "1", SESSION_HEADER: new_session_id(), "Content-Type": ctype})
    _no_5xx(resp.status, f"{ctype} {body[:60]!r}")
    assert resp.status in (400, 413, 415) or resp.status == 201
    if resp.status != 201:
        assert not widget_config.upload_dir.exists() or not any(widget_config.upload_dir.iterdir())


async def test_oversized_upload_is_413_and_stores_nothing(fuzz_client: TestClient, widget_config: Any) -> None:
    form = FormData()
    form.add_field("file", io.BytesIO(png_bytes() + b"\0" * (6 * 1024 * 1024)), filename="big.png",
                   content_type="image/png")
    resp = await fuzz_client.post("/widget/upload", data=form, headers={UPLOAD_HEADER: "1", SESSION_HEADER: new_session_id()})
    assert resp.status == 413
    assert not widget_config.upload_dir.exists() or not any(widget_config.upload_dir.iterdir())


# --- regressions for what the fuzzing found (each failed before its fix) ---------------------


async def test_regression_nul_and_surrogates_are_400_not_500(fuzz_client: TestClient, any_engine: Engine) -> None:
    key = admin.create_api_key(ConsoleUnitOfWork(any_engine), "regression")
    make_users(any_engine, ("grid",))
    filed = file(any_engine, "reg-1")
    before = row_counts(any_engine)
    for desc in ("a\x00b", "a\ud800b"):  # PostgreSQL: NUL refused; surrogates: not UTF-8
        raw = json.dumps({"api_key": key, "service_code": "dog", "address_string": "公主府社区", "description": desc})
        resp = await fuzz_client.post("/open311/v2/requests.json", data=raw, headers={"Content-Type": "application/json"})
        assert resp.status == 400 and "NUL" in (await resp.json())[0]["description"]
    resp = await fuzz_client.get("/open311/v2/requests.json", params={"service_request_id": "\x00"})
    assert resp.status == 400
    resp = await fuzz_client.post("/open311/v2/requests.json",
                                  data=json.dumps({"api_key": key, "service_code": "dog", "description": {"a": 1},
                                                   "address_string": "x"}),
                                  headers={"Content-Type": "application/json"})
    assert resp.status == 400  # wrong type: not stored as the text "{'a': 1}"
    csrf = await login(fuzz_client, "grid")
    assert (await fuzz_client.post(f"/console/tickets/{filed.ticket_id}/accept", data={"csrf": csrf},
                                   allow_redirects=False)).status == 303
    before = row_counts(any_engine)
    for raw_reason in (b"x%00y", b"\xff\xfe"):  # NUL (PostgreSQL refuses it), bytes that are not UTF-8
        resp = await fuzz_client.post(f"/console/tickets/{filed.ticket_id}/work",
                                      data=b"csrf=" + csrf.encode() + b"&reason=" + raw_reason, headers=FORM,
                                      allow_redirects=False)
        assert resp.status == 400, raw_reason
    resp = await fuzz_client.get("/console/queue", params={"page": "99999999999999999999"})
    assert resp.status == 400  # an OFFSET past bigint: was a 500
    assert row_counts(any_engine) == before
    assert NASTY_TEXT  # (the fuzzers' seed list is shared)


async def test_regression_broken_multipart_is_400_not_500(fuzz_client: TestClient, widget_config: Any,
                                                          any_engine: Engine) -> None:
    bad_part_header = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                       b"Content-Type: \x00\r\n\r\n\x89PNG\r\n\x1a\n\r\n--b--\r\n")
    for body, ctype in ((b"no boundary here", "multipart/form-data; boundary=b"), (bad_part_header,
                                                                                   "multipart/form-data; boundary=b")):
        resp = await fuzz_client.post("/widget/upload", data=body, headers={UPLOAD_HEADER: "1", SESSION_HEADER: new_session_id(), "Content-Type": ctype})
        assert resp.status == 400 and (await resp.json())["error"] == "bad_request"
    assert not widget_config.upload_dir.exists() or not any(widget_config.upload_dir.iterdir())
    # the console's forms: the same broken body is a 400 page (was a 500)
    make_users(any_engine, ("grid",))
    filed = file(any_engine, "reg-mp")
    csrf = await login(fuzz_client, "grid")
    before = row_counts(any_engine)
    resp = await fuzz_client.post(f"/console/tickets/{filed.ticket_id}/accept", data=bad_part_header.replace(
        b"name=\"file\"", b"name=\"csrf\""), headers={"Content-Type": "multipart/form-data; boundary=b"},
        allow_redirects=False)
    assert resp.status == 400 and "请求有误" in await resp.text()
    assert row_counts(any_engine) == before
    assert csrf
