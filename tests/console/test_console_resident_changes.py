"""What residents add to or withdraw from their tickets, as the console shows it (issue 18):
补充 with the resident's photo in the ticket's log (the photo only to who may see the ticket,
only the resident's own upload), 撤单 with its reason and the ticket under 已办结."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy.engine import Engine

from bot.services.resident import add_to_ticket, withdraw_ticket
from bot.uploads import save_photo
from tests.console.helpers import another_client, file, login, make_users, now, uow
from tests.console.test_console_web import png_bytes

pytestmark = pytest.mark.asyncio


async def test_additions_and_the_withdrawal_in_the_ticket_log(client: TestClient, engine: Engine, upload_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QC_UPLOAD_DIR", str(upload_dir))
    make_users(engine, ("grid", "other"))
    filed = file(engine, "r1", sender="r1")
    mine = save_photo(png_bytes(), "png", upload_dir, owner="r1")
    theirs = save_photo(png_bytes(), "png", upload_dir, owner="r2")
    assert add_to_ticket(uow(engine), filed.number, "r1", "晚上<b>十点</b>以后还在叫", None, "k1", now()).status == "added"
    assert add_to_ticket(uow(engine), filed.number, "r1", "", f"/widget/photo/{mine}", "k2", now()).status == "added"
    assert add_to_ticket(uow(engine), filed.number, "r1", "", f"/widget/photo/{theirs}", "k3", now()).status == "added"
    await login(client, "grid")
    page = await (await client.get(f"/console/tickets/{filed.ticket_id}")).text()
    assert "<strong>补充</strong>" in page and html.escape("晚上<b>十点</b>以后还在叫", quote=False) in page
    # events: 受理 0, 派单 1, 补充 2, 3 (its photo), 4 (another conversation's photo)
    assert f'/console/tickets/{filed.ticket_id}/additions/3/photo' in page
    resp = await client.get(f"/console/tickets/{filed.ticket_id}/additions/3/photo")
    assert resp.status == 200 and resp.headers["Content-Type"] == "image/png"
    assert (await client.get(f"/console/tickets/{filed.ticket_id}/additions/4/photo")).status == 404  # not r1's upload
    for index in ("2", "0", "99", "x"):  # no photo, not an addition, no such event, not a number
        assert (await client.get(f"/console/tickets/{filed.ticket_id}/additions/{index}/photo")).status == 404
    async with another_client(client) as c:
        await login(c, "other")  # a street that has nothing to do with the ticket
        assert (await c.get(f"/console/tickets/{filed.ticket_id}/additions/3/photo")).status == 404

    assert withdraw_ticket(uow(engine), filed.number, "r1", "邻居已经把狗拴好了", "k4", now()).status == "withdrawn"
    page = await (await client.get(f"/console/tickets/{filed.ticket_id}")).text()
    assert '<span class="state state-withdrawn">已撤单</span>' in page
    assert "<strong>撤单</strong>" in page and "邻居已经把狗拴好了" in page
    assert "/accept" not in page  # nothing left to do on it
    done = await (await client.get("/console/queue?view=done")).text()
    assert filed.number in done
    assert filed.number not in await (await client.get("/console/queue?view=open")).text()
