"""Shared helpers of the console tests: users, tickets, logging in through the forms."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy.engine import Engine

from bot.console import services as svc
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.model import ComplaintDraft, DispatchClass, Route
from bot.services.tickets import FilingResult, file_complaint

PASSWORD = "correct-horse-battery"
STREET = "150102001"  # 海拉尔东路街道, 新城区
OTHER_STREET = "150102002"  # 锡林北路街道
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')

USERS = {
    # username: (role, queues)
    "grid": ("worker", (f"street:{STREET}",)),
    "grid2": ("worker", (f"street:{STREET}",)),
    "other": ("worker", (f"street:{OTHER_STREET}",)),
    "dog": ("department", ("police_dog",)),
    "disp": ("dispatcher", ("dispatch_center",)),
    "root": ("admin", ()),
    "desk": ("agent", ()),  # 坐席: the 转人工 queue (languages zh)
}


def now() -> datetime:
    return datetime.now(timezone.utc)


def uow(engine: Engine) -> ConsoleUnitOfWork:
    return ConsoleUnitOfWork(engine)


def make_users(engine: Engine, names: tuple[str, ...] | None = None) -> None:
    for name in names or tuple(USERS):
        role, queues = USERS[name]
        svc.create_user(uow(engine), name, f"{name}的名字", PASSWORD, role, queues, now())


def route(street: str | None = STREET, lead: str = "police_dog", cls: DispatchClass = DispatchClass.NORMAL) -> Route:
    if street is None:
        return Route("dispatch_center", (), "150102", None, None, cls, "地点未能对应到街道，转派单中心")
    return Route(
        lead=lead,
        co=("urban_management", f"street:{street}"),
        district_code="150102",
        street_code=street,
        community_code=f"{street}001",
        dispatch_class=cls,
        reason="类别 文明养犬",
    )


def file(
    engine: Engine,
    key: str,
    *,
    sender: str = "resident-1",
    street: str | None = STREET,
    description: str = "楼下有人遛狗不牵绳",
    category: str = "dog",
    at: datetime | None = None,
    channel: str = "rest",
    cls: DispatchClass = DispatchClass.NORMAL,
    confidential: bool = False,
) -> FilingResult:
    draft = ComplaintDraft(
        sender_id=sender,
        channel=channel,
        category=category,
        description=description,
        location_text="公主府社区3号楼",
        photo=None,
        phone="13847112345",
        confidential=confidential,
        idempotency_key=key,
    )
    # No community: tests decide about merging themselves (see file_merged).
    r = route(street, cls=cls)
    r = Route(r.lead, r.co, r.district_code, r.street_code, None, r.dispatch_class, r.reason)
    return file_complaint(uow(engine), draft, r, at or now())


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no csrf field on the page"
    return found.group(1)


async def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token."""
    page = await client.get("/console/login")
    token = csrf_of(await page.text())
    resp = await client.post(
        "/console/login", data={"csrf": token, "username": username, "password": password}, allow_redirects=False
    )
    assert resp.status == 303, await resp.text()
    queue = await client.get("/console/queue")
    assert queue.status == 200
    return csrf_of(await queue.text())


async def post(client: TestClient, path: str, csrf: str, **data: Any) -> Any:
    return await client.post(path, data={"csrf": csrf, **data}, allow_redirects=False)


@asynccontextmanager
async def another_client(client: TestClient) -> AsyncIterator[TestClient]:
    """A second browser (own cookies) on the same running test server."""
    other = TestClient(client.server)
    try:
        yield other
    finally:
        await other._session.close()  # not other.close(): that would stop the shared server
