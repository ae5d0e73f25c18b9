"""Open311 GeoReport v2 (JSON) on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.console import services as svc
from bot.console.admin import create_api_key
from bot.console.tables import api_keys
from bot.console.uow import ConsoleUnitOfWork
from bot.storage.tables import ticket_reports, tickets
from tests.console.helpers import file, make_users, now

pytestmark = pytest.mark.asyncio


async def test_services_list_every_category(client: TestClient) -> None:
    resp = await client.get("/open311/v2/services.json")
    assert resp.status == 200
    services = await resp.json()
    assert [s["service_code"] for s in services][:3] == ["dog", "illegal_ads", "drainage"]
    assert len(services) == 22
    assert services[0]["service_name"] == "文明养犬" and services[0]["metadata"] is False
    assert (await client.get("/open311/discovery.json")).status == 200


async def test_post_needs_a_valid_key(client: TestClient, engine: Engine) -> None:
    create_api_key(ConsoleUnitOfWork(engine), "市民App")
    for data in ({}, {"api_key": "wrong"}):
        resp = await client.post("/open311/v2/requests.json", data={**data, "service_code": "dog",
                                                                      "description": "x", "address_string": "y"})
        assert resp.status == 403
        assert await resp.json() == [{"code": 403, "description": "api_key missing or invalid"}]
    with engine.connect() as conn:
        assert conn.execute(select(tickets)).all() == []
        [key_hash] = conn.execute(select(api_keys.c.key_hash)).scalars().all()
    assert len(key_hash) == 64  # stored hashed


async def test_post_files_and_routes_a_request(client: TestClient, engine: Engine) -> None:
    key = create_api_key(ConsoleUnitOfWork(engine), "市民App")
    resp = await client.post(
        "/open311/v2/requests.json",
        data={
            "api_key": key,
            "service_code": "dog",
            "description": "公主府社区有人遛狗不牵绳",
            "address_string": "新城区海拉尔东路街道公主府社区3号楼",
            "account_id": "u-77",
            "phone": "13800000000",
        },
        headers={"Idempotency-Key": "req-1"},
    )
    assert resp.status == 201, await resp.text()
    [created] = await resp.json()
    number = created["service_request_id"]
    assert number.startswith("QC-") and "市公安局养犬管理" in created["service_notice"]
    with engine.connect() as conn:
        row = conn.execute(select(tickets)).mappings().one()
        report = conn.execute(select(ticket_reports)).mappings().one()
    assert (row["lead_queue"], row["street_code"], row["community_code"], row["state"]) == (
        "police_dog", "150102001", "150102001001", "派单")
    assert "street:150102001" in row["co_queues"]
    assert (report["channel"], report["sender_id"], report["confidential"]) == ("open311", "open311:市民App:u-77", True)
    # A retry with the same Idempotency-Key files nothing new.
    again = await client.post(
        "/open311/v2/requests.json",
        data={"api_key": key, "service_code": "dog", "description": "公主府社区有人遛狗不牵绳",
              "address_string": "新城区海拉尔东路街道公主府社区3号楼", "account_id": "u-77"},
        headers={"Idempotency-Key": "req-1"},
    )
    assert (await again.json())[0]["service_request_id"] == number
    with engine.connect() as conn:
        assert len(conn.execute(select(tickets)).all()) == 1


async def test_post_json_body_and_unknown_place_goes_to_dispatch(client: TestClient, engine: Engine) -> None:
    key = create_api_key(ConsoleUnitOfWork(engine), "app")
    resp = await client.post(
        "/open311/v2/requests.json",
        json={"api_key": key, "service_code": "illegal_ads", "description": "单元门贴满小广告", "address_string": "某某路口"},
    )
    assert resp.status == 201
    with engine.connect() as conn:
        assert conn.execute(select(tickets.c.lead_queue, tickets.c.state)).one() == ("dispatch_center", "受理")


@pytest.mark.parametrize(
    ("data", "status", "text"),
    [
        ({"service_code": "nope", "description": "x", "address_string": "y"}, 400, "service_code"),
        ({"service_code": "dog", "address_string": "y"}, 400, "description"),
        ({"service_code": "dog", "description": "x"}, 400, "location"),
        ({"service_code": "dog", "description": "x", "address_string": "y", "phone": "call me"}, 400, "phone"),
        ({"service_code": "dog", "description": "x", "address_string": "y", "media_url": "javascript:x"}, 400, "media_url"),
    ],
)
async def test_post_validation(client: TestClient, engine: Engine, data: dict, status: int, text: str) -> None:
    key = create_api_key(ConsoleUnitOfWork(engine), "app")
    resp = await client.post("/open311/v2/requests.json", data={"api_key": key, **data})
    assert resp.status == status
    [err] = await resp.json()
    assert err["code"] == status and text in err["description"]


async def test_get_requests_maps_states_and_hides_personal_data(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid",))
    open_one = file(engine, "k1", description="有人遛狗不牵绳 我电话13847112345")
    done = file(engine, "k2", sender="r2", description="小区里狗叫扰民")
    with ConsoleUnitOfWork(engine) as uow:
        user = uow.console.get_user_by_username("grid")
    grid = svc.Principal.of(user)
    svc.perform(ConsoleUnitOfWork(engine), grid, done.ticket_id, "accept", {}, now())
    svc.perform(ConsoleUnitOfWork(engine), grid, done.ticket_id, "resolve", {"result": "已处理"}, now())

    resp = await client.get("/open311/v2/requests.json")
    assert resp.status == 200
    found = {r["service_request_id"]: r for r in await resp.json()}
    assert found[open_one.number]["status"] == "open" and found[done.number]["status"] == "closed"
    assert found[done.number]["service_code"] == "dog" and found[done.number]["agency_responsible"] == "市公安局养犬管理"
    body = await resp.text()
    assert "13847112345" not in body or "有人遛狗不牵绳 我电话" in body  # description is the resident's own text
    assert "phone" not in found[open_one.number]
    closed = await (await client.get("/open311/v2/requests.json?status=closed")).json()
    assert [r["service_request_id"] for r in closed] == [done.number]
    one = await client.get(f"/open311/v2/requests/{done.number}.json")
    assert [r["service_request_id"] for r in await one.json()] == [done.number]
    missing = await client.get("/open311/v2/requests/QC-000101-0001.json")
    assert missing.status == 404 and (await missing.json())[0]["code"] == 404
    bad = await client.get("/open311/v2/requests.json?status=maybe")
    assert bad.status == 400
    assert (await client.get("/open311/v2/nothing.json")).status == 404


async def test_confidential_descriptions_are_withheld(client: TestClient, engine: Engine) -> None:
    key = create_api_key(ConsoleUnitOfWork(engine), "app")
    resp = await client.post(
        "/open311/v2/requests.json",
        data={"api_key": key, "service_code": "noise", "description": "302室每晚装修到半夜", "address_string": "公主府社区"},
    )
    [created] = await resp.json()
    [shown] = await (await client.get(f"/open311/v2/requests/{created['service_request_id']}.json")).json()
    assert shown["description"] is None and "302室" not in await (await client.get("/open311/v2/requests.json")).text()
