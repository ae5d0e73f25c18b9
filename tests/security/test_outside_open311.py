"""Issue 13 items 2, 13 (Open311 part) and 15, checked from outside: the web server over HTTP,
API keys made with the CLI (`python -m bot console apikey`), rows read from the database.

- item 2: the public Open311 list carries no phone or ID numbers, no names the resident gave
  and no exact house numbers; a key of scope 'personal' reads the words as written, a
  default key reads what the public reads;
- item 13: one key's POSTs are limited per minute (QC_OPEN311_RATE_LIMIT) and its repeats
  are not counted as more residents in 并单 (共 N 位居民反映);
- item 15: bidi overrides and CR/LF sent in are stored as plain spaces, and a ticket page
  shows invisible characters stored earlier as ‹U+202E›, never as a fake second line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from bot.storage.tables import ticket_reports, tickets
from tests.security.conftest import make_app

pytestmark = pytest.mark.asyncio
REPO = Path(__file__).resolve().parents[2]
LIST = "/open311/v2/requests.json"

# what residents really type: names, mobiles (spaced, dashed, full-width), ID numbers, flats
LEAKY = (
    "楼上漏水到我家，我是王小明，电话１３９１２３４５６７８，另一个号139 8765 4321，"
    "身份证150102199001011234，住金宇文苑3号楼2单元502室，联系人：李秀英，姓张的邻居也知道"
)
SECRETS = ("王小明", "13912345678", "8765 4321", "150102199001011234", "502", "李秀英",
           "姓张", "１３９１２３４５６７８", "3号楼", "2单元")


def cli_api_key(engine: Engine, name: str, *extra: str) -> str:
    env = {**os.environ, "QC_DATABASE_URL": str(engine.url), "RASA_TELEMETRY_ENABLED": "false", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "bot", "console", "apikey", name, *extra], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout.strip().splitlines()[-1]


async def file_one(client: TestClient, key: str, description: str, address: str, **more: str) -> Any:
    resp = await client.post(LIST, data={"api_key": key, "service_code": "dog", "description": description,
                                         "address_string": address, **more})
    return resp.status, await resp.json()


def make_public(engine: Engine) -> None:
    """Open311 files confidential by default; a chat resident may not ask for it (public list)."""
    with engine.begin() as conn:
        conn.execute(update(ticket_reports).values(confidential=False))


async def test_public_list_masks_what_residents_said_about_themselves(engine: Engine, tmp_path: Path,
                                                                        widget_config: Any) -> None:
    filer = cli_api_key(engine, "市民App")
    async with TestClient(TestServer(make_app(engine, tmp_path, widget_config))) as client:
        status, body = await file_one(client, filer, LEAKY, "新城区海拉尔东路街道公主府社区3号楼2单元502室")
        assert status == 201, body
        make_public(engine)
        resp = await client.get(LIST)
        assert resp.status == 200
        [item] = await resp.json()
        raw = await (await client.get(LIST)).text()
        single = await (await client.get(f"/open311/v2/requests/{item['service_request_id']}.json")).text()
        keyed = await (await client.get(LIST, params={"api_key": filer})).json()  # default scope: public
    for text in (raw, single, str(keyed)):
        for secret in SECRETS:
            assert secret not in text, (secret, text)
    assert item["description"] == (
        "楼上漏水到我家，我是***，电话139****5678，另一个号139****4321，"
        "身份证150***********1234，住金宇文苑*号楼*单元*室，联系人：***，姓*的邻居也知道"
    )
    assert item["address"] == "新城区海拉尔东路街道公主府社区*"  # an address stops at the building
    with engine.connect() as conn:  # the ticket keeps what the resident wrote, for the workers
        assert conn.execute(select(tickets.c.description)).scalar_one() == LEAKY


# what an outside tester of today's main still read in the public list, and close variants
STILL_LEAKY = (
    "赛马场社区7幢2门402楼道灯坏了；朋友家在22号院6号楼东单元1102，三号楼二单元五零二也一样，"
    "如意小区１２幢３门５０２也是，我姓王，叫王小明，联系我：马云飞，"
    "电话1 3 9 1 2 3 4 5 6 7 8，或者一三九八七六五四三二一，身份证1101 0119 9003 0712 34，"
    "金桥小区1201室 赵大海 13804712233"
)
STILL_SECRETS = ("7幢", "2门", "402", "东单元", "1102", "五零二", "５０２", "王小明", "马云飞", "赵大海",
                 "1 3 9 1 2", "一三九八七六五四三二一", "1101 0119", "13804712233", "1201")


@pytest.mark.parametrize("address", ["新城区公主府社区1201室 赵大海 13804712233", "新城区公主府社区7幢2门402",
                                     "新城区公主府社区三号楼二单元五零二", "新城区公主府社区22号院6号楼东单元1102"])
async def test_public_view_masks_what_the_outside_tester_still_read(engine: Engine, tmp_path: Path,
                                                                    widget_config: Any, address: str) -> None:
    filer = cli_api_key(engine, "市民App")
    async with TestClient(TestServer(make_app(engine, tmp_path, widget_config))) as client:
        status, body = await file_one(client, filer, STILL_LEAKY, address)
        assert status == 201, body
        make_public(engine)
        raw = await (await client.get(LIST)).text()
        [item] = await (await client.get(LIST)).json()
    for secret in STILL_SECRETS:
        assert secret not in raw, (secret, raw)
    assert item["description"] == (
        "赛马场社区*幢*门*楼道灯坏了；朋友家在*号院*号楼*单元*，*号楼*单元*也一样，"
        "如意小区*幢*门*也是，我姓*，叫***，联系我：***，"
        "电话139****5678，或者139****4321，身份证110***********1234，"
        "金桥小区*室 *** 138****2233"
    )
    assert item["address"] == "新城区公主府社区*"


async def test_a_personal_scope_key_reads_the_words_as_written(engine: Engine, tmp_path: Path,
                                                               widget_config: Any) -> None:
    filer = cli_api_key(engine, "市民App")
    reader = cli_api_key(engine, "12345热线", "--scope", "personal")
    async with TestClient(TestServer(make_app(engine, tmp_path, widget_config))) as client:
        assert (await file_one(client, filer, LEAKY, "公主府社区3号楼"))[0] == 201
        make_public(engine)
        [item] = await (await client.get(LIST, params={"api_key": reader})).json()
        bad = await client.get(LIST, params={"api_key": "not-a-key"})
        assert bad.status == 403
    assert (item["description"], item["address"]) == (LEAKY, "公主府社区3号楼")


async def test_one_key_is_rate_limited_and_its_repeats_count_as_one_resident(
        engine: Engine, tmp_path: Path, widget_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QC_OPEN311_RATE_LIMIT", "5")
    spammer, other = cli_api_key(engine, "刷单方"), cli_api_key(engine, "市民App")
    address = "新城区海拉尔东路街道公主府社区"
    async with TestClient(TestServer(make_app(engine, tmp_path, widget_config))) as client:
        results = [await file_one(client, spammer, f"有人遛狗不牵绳{i}", address, account_id=f"u{i}")
                   for i in range(12)]
        neighbour = await file_one(client, other, "有人遛狗不牵绳", address, account_id="n1")
    assert [s for s, _ in results] == [201] * 5 + [429] * 7
    assert neighbour[0] == 201
    notices = [b[0]["service_notice"] for s, b in results if s == 201]
    assert all("共 1 位居民反映" in n for n in notices[1:]), notices
    assert "共 2 位居民反映" in neighbour[1][0]["service_notice"]
    with engine.connect() as conn:
        assert conn.execute(select(tickets.c.report_count)).scalars().all() == [2]
        assert len(conn.execute(select(ticket_reports.c.id)).all()) == 6  # refused POSTs stored nothing


async def test_the_console_counts_residents_as_the_ticket_does(engine: Engine, tmp_path: Path, widget_config: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside test of 6 May: 30 POSTs of one key showed 30 并单 entries and 居民反映（31）
    while 反映人数 was 2. The page counts residents as the ticket does and labels the repeats."""
    from tests.console.helpers import login, make_users

    monkeypatch.setenv("QC_OPEN311_RATE_LIMIT", "30")
    spammer, other = cli_api_key(engine, "刷单方"), cli_api_key(engine, "市民App")
    address = "新城区海拉尔东路街道公主府社区"
    async with TestClient(TestServer(make_app(engine, tmp_path, widget_config))) as client:
        for i in range(6):
            assert (await file_one(client, spammer, "有人遛狗不牵绳", address, account_id=f"u{i}"))[0] == 201
        assert (await file_one(client, other, "有人遛狗不牵绳", address, account_id="n1"))[0] == 201
        with engine.connect() as conn:
            ticket_id, count = conn.execute(select(tickets.c.id, tickets.c.report_count)).one()
        make_users(engine, ("root",))
        await login(client, "root")
        page = await (await client.get(f"/console/tickets/{ticket_id}")).text()
    assert count == 2
    assert "<dt>反映人数</dt><dd>2（并单）</dd>" in page
    assert "居民反映（2 位居民，另有同一居民重复反映 5 次）" in page
    assert page.count("同一居民重复反映（不计人数）") == 5 + 5  # each repeat report and its 并单 step


async def test_bidi_overrides_and_line_breaks_cannot_disguise_a_ticket(engine: Engine, tmp_path: Path,
                                                                       widget_config: Any) -> None:
    from tests.console.helpers import login, make_users

    filer = cli_api_key(engine, "市民App")
    tricky = "有人遛狗不牵绳\u202e结办已\u202c\r\n伪造行：已办结\u2066\u200b\ufeff"
    async with TestClient(TestServer(make_app(engine, tmp_path, widget_config))) as client:
        status, body = await file_one(client, filer, tricky, "公主府社区\n伪造行：已办结")
        assert status == 201, body
        with engine.connect() as conn:
            ticket_id, stored, place = conn.execute(
                select(tickets.c.id, tickets.c.description, tickets.c.location_text)).one()
        assert stored == "有人遛狗不牵绳 结办已   伪造行：已办结"
        assert place == "公主府社区 伪造行：已办结"
        # text stored before this fix (or by any other path) is shown escaped, on one line
        with engine.begin() as conn:
            conn.execute(update(tickets).values(description="漏水\u202e结办已\n伪造行：已办结"))
        make_users(engine, ("grid",))
        await login(client, "grid")
        page = await (await client.get(f"/console/tickets/{ticket_id}")).text()
    assert "\u202e" not in page and "\u202c" not in page and "\u2066" not in page
    assert "漏水‹U+202E›结办已 ⏎ 伪造行：已办结" in page


async def test_chat_channels_clean_bidi_overrides_and_line_breaks() -> None:
    """The REST channel (and Socket.IO/WeChat, which share bot.text.clean_message) hands the
    assistant one line of plain text: no override reverses it, no CR/LF starts a fake line."""
    import aiohttp

    from bot.channels.rest import RestInput
    from tests.security.test_rate_limits import RecordingBot, close, serve

    bot = RecordingBot()
    server, base = await serve(RestInput(), bot, "/webhooks/rest")
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(base + "/webhooks/rest/webhook",
                              json={"sender": "r1", "message": "井盖丢了\u202e结办已\u202c\r\n伪造行：已办结\u2067\u200f"}) as r:
                assert r.status == 200
    finally:
        await close(server)
    assert [m.text for m in bot.messages] == ["井盖丢了 结办已   伪造行：已办结"]  # Rasa strips the ends


@pytest.mark.parametrize("lat, long", [("nan", "111.7"), ("40.8", "1e309"), ("inf", "-inf"), ("abc", "111.7"),
                                       ("91", "111.7"), ("40.8", "-181")])
async def test_coordinates_that_are_not_a_place_on_earth_are_refused(engine: Engine, tmp_path: Path,
                                                                       widget_config: Any, lat: str, long: str) -> None:
    """Outside test (issue 16 round): lat=nan, long=1e309 filed a ticket at "nan,inf"; with an
    address beside it, a non-number lat was silently kept. Both are 400 now, and nothing is stored."""
    key = cli_api_key(engine, "地图App")
    async with TestClient(TestServer(make_app(engine, tmp_path, widget_config))) as client:
        alone = await client.post(LIST, data={"api_key": key, "service_code": "dog", "description": "狗",
                                              "lat": lat, "long": long})
        beside = await client.post(LIST, data={"api_key": key, "service_code": "dog", "description": "狗",
                                               "address_string": "新城区海拉尔东路街道", "lat": lat, "long": long})
        assert (alone.status, beside.status) == (400, 400)
        assert (await alone.json())[0]["description"] == "lat and long must be numbers on Earth (-90..90, -180..180)"
    with engine.connect() as conn:
        assert conn.execute(select(tickets.c.id)).all() == []


async def test_coordinates_alone_are_a_location(engine: Engine, tmp_path: Path, widget_config: Any) -> None:
    """The 400 for a missing location says what is accepted: an address, or lat and long."""
    key = cli_api_key(engine, "地图App")
    async with TestClient(TestServer(make_app(engine, tmp_path, widget_config))) as client:
        none = await client.post(LIST, data={"api_key": key, "service_code": "dog", "description": "狗"})
        assert none.status == 400
        assert (await none.json())[0]["description"] == "a location is required: address_string, or lat and long"
        ok = await client.post(LIST, data={"api_key": key, "service_code": "dog", "description": "狗",
                                           "lat": "40.8", "long": "111.7"})
        assert ok.status == 201
    with engine.connect() as conn:
        assert conn.execute(select(ticket_reports.c.location_text)).scalars().all() == ["40.8,111.7"]


@pytest.mark.parametrize("args", [("-h",), ("--help",), ("apikey", "-h")])
async def test_the_console_cli_shows_its_help(args: tuple[str, ...]) -> None:
    """Outside test (issue 16 round): `python -m bot console -h` said "unrecognized arguments: -h"
    (REMAINDER does not take a leading option), while the keys are made with this very command."""
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "bot", "console", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: python -m bot console")
