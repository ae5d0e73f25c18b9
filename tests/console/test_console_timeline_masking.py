"""Free text in a ticket's timeline (退单 and other reasons workers type) is masked like the
description (issue 19, "who saw what"): a phone or ID number a worker copies into a reason is
not shown in full on the ticket page. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.storage.tables import ticket_events
from tests.console.helpers import file, login, make_users, post

pytestmark = pytest.mark.asyncio

REASON = "不在本辖区，居民电话13900001111，身份证110101199003071234"


async def test_a_reason_with_a_phone_and_an_id_number_is_masked_on_the_ticket_page(
    client: TestClient, engine: Engine
) -> None:
    make_users(engine, ("grid", "disp"))
    filed = file(engine, "k1", category="noise", description="夜市摊贩每晚喇叭吆喝到十一点")
    worker = await login(client, "grid")
    assert (await post(client, f"/console/tickets/{filed.ticket_id}/accept", worker)).status == 303
    assert (await post(client, f"/console/tickets/{filed.ticket_id}/return", worker, reason=REASON)).status == 303
    with engine.connect() as conn:  # stored as typed: the record is the units' own
        reasons = conn.execute(select(ticket_events.c.reason).where(ticket_events.c.kind == "退单")).scalars().all()
    assert reasons == [REASON]

    for who in ("grid", "disp"):
        await login(client, who)
        page = await (await client.get(f"/console/tickets/{filed.ticket_id}")).text()
        assert "13900001111" not in page and "110101199003071234" not in page, who
        assert "不在本辖区，居民电话139****1111，身份证110***********1234" in page, who


async def test_a_pending_extension_reason_is_masked_on_the_ticket_page(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "disp"))
    filed = file(engine, "k1", category="noise", description="夜市摊贩每晚喇叭吆喝到十一点")
    worker = await login(client, "grid")
    assert (await post(client, f"/console/tickets/{filed.ticket_id}/accept", worker)).status == 303
    assert (await post(client, f"/console/tickets/{filed.ticket_id}/extend", worker, days="3",
                       reason="需联系业主13900001111协调")).status == 303
    await login(client, "disp")
    page = await (await client.get(f"/console/tickets/{filed.ticket_id}")).text()
    assert "延期申请：3 个工作日 —— 需联系业主139****1111协调" in page
    assert "13900001111" not in page
