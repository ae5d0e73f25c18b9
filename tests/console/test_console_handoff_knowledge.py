"""加入知识库 over HTTP, on SQLite and PostgreSQL: an agent adds the answer they gave to a 咨询
item (a question the knowledge base missed) to data/knowledge/consult.yml — the file before
and after (exactly the new topic appended, comments kept), the consult action answering the
same question from the new topic without a restart, the review inbox item for the retraining,
and what is refused (an existing id, an answer without 12345, a hand-off that is no 咨询)."""
from __future__ import annotations

import asyncio
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select
from sqlalchemy.engine import Engine

import bot.reference.knowledge as knowledge_module
from actions.consult import ActionConsult
from bot.console import services as svc
from bot.console.retraining import RETRAIN_SETTINGS
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.handoff import ServiceHours
from bot.ops import runtime
from bot.paths import REPO_ROOT
from bot.retraining.tables import review_items
from bot.retraining.trainer import RetrainSettings
from bot.services import handoff
from bot.storage.handoff import handoff_events
from bot.storage.uow import SqlAlchemyUnitOfWork
from tests.console.helpers import PASSWORD, login, make_users, post

pytestmark = pytest.mark.asyncio
QUESTION = "公积金贷款额度怎么算"
REPLY = "公积金贷款的额度和条件由住房公积金管理中心核定，具体请拨打 12345 咨询，或到公积金中心窗口询问。"
NEW_TOPIC = """
  - id: housing_fund_loan
    title: 公积金贷款额度
    keywords: [公积金, 贷款额度, 公积金贷款]
    answer: |
      公积金贷款的额度和条件由住房公积金管理中心核定，具体请拨打 12345 咨询，或到公积金中心窗口询问。
"""


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "data" / "knowledge").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "data" / "knowledge" / "consult.yml", tmp_path / "data" / "knowledge")
    return tmp_path / "data"


@pytest.fixture
def app_overrides(data_dir: Path, tmp_path: Path) -> dict:
    return {RETRAIN_SETTINGS: RetrainSettings(data_dir=data_dir, store_dir=tmp_path / "store",
                                              deploy_dir=tmp_path / "deploy")}


@pytest.fixture(autouse=True)
def actions_read(data_dir: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The action server reads the same knowledge file and store as the console."""
    monkeypatch.setattr(knowledge_module, "KNOWLEDGE_PATH", data_dir / "knowledge" / "consult.yml")
    monkeypatch.setenv(handoff.HOURS_ENV, "00:00-23:59")
    runtime.reset_engine(engine)
    yield
    runtime.reset_engine(None)


def consult(sender: str, text: str) -> list[dict[str, Any]]:
    latest = {"text": text, "intent": {"name": "consult", "confidence": 0.97}, "entities": []}
    tracker = Tracker(sender, {}, latest, [], False, None, {}, "action_listen")
    dispatcher = CollectingDispatcher()
    asyncio.run(ActionConsult().run(dispatcher, tracker, {}))
    return [{k: m[k] for k in ("response", "answer", "topic")} for m in dispatcher.messages]


def answered_question(engine: Engine) -> int:
    """The question the knowledge base missed (a 咨询 item), taken and answered by desk."""
    now = datetime.now(timezone.utc)
    [said] = consult("rest:asker-1", QUESTION)
    assert said["topic"] is None
    [h] = HANDOFFS(engine)
    handoff.take(SqlAlchemyUnitOfWork(engine), h, "user:desk", "坐席desk", now)
    handoff.say(SqlAlchemyUnitOfWork(engine), h, "user:desk", REPLY, now)
    return h


def HANDOFFS(engine: Engine) -> list[int]:  # noqa: N802
    from bot.storage.handoff import handoffs

    with engine.connect() as conn:
        return list(conn.execute(select(handoffs.c.id).order_by(handoffs.c.id)).scalars())


def agents(engine: Engine) -> None:
    make_users(engine, ("grid", "root"))
    svc.create_user(ConsoleUnitOfWork(engine), "desk", "坐席desk", PASSWORD, "agent", (), datetime.now(timezone.utc))


async def test_the_agents_answer_joins_the_knowledge_base_and_answers_the_next_resident(
        client: TestClient, engine: Engine, data_dir: Path) -> None:
    agents(engine)
    path = data_dir / "knowledge" / "consult.yml"
    before = path.read_text(encoding="utf-8")
    hid = await asyncio.to_thread(answered_question, engine)
    csrf = await login(client, "desk")
    page = await (await client.get(f"/console/handoff/{hid}")).text()
    # prefilled: the question as title, its words as keywords, the agent's reply as the answer
    assert f'name="kb_id" maxlength="48" required pattern="[a-z][a-z0-9_]{{2,47}}" value="question_{hid}"' in page
    assert f'name="kb_title" maxlength="40" required value="{QUESTION}"' in page
    assert re.search(r'name="kb_keywords" maxlength="300" required value="[^"]*公积金[^"]*"', page)
    assert f">{REPLY}</textarea>" in page

    form = {"kb_id": "housing_fund_loan", "kb_title": "公积金贷款额度", "kb_keywords": "公积金，贷款额度 公积金贷款",
            "kb_answer": REPLY}
    # refused: no 12345 in the answer; nothing written
    bad = await post(client, f"/console/handoff/{hid}/knowledge", csrf, **{**form, "kb_answer": "额度由公积金中心核定。"})
    assert bad.status == 400 and "答复要引导居民拨打 12345" in await bad.text()
    assert path.read_text(encoding="utf-8") == before

    ok = await post(client, f"/console/handoff/{hid}/knowledge", csrf, **form)
    assert (ok.status, ok.headers["Location"]) == (303, f"/console/handoff/{hid}?topic=housing_fund_loan")
    assert path.read_text(encoding="utf-8") == before + NEW_TOPIC  # comments and every other byte kept

    # live for the assistant at once: the next resident's question gets the new topic
    said = await asyncio.to_thread(consult, "rest:asker-2", "公积金贷款额度是多少")
    assert said == [{"response": "utter_consult_answer", "answer": REPLY, "topic": "housing_fund_loan"}]
    assert HANDOFFS(engine) == [hid]  # answered: no new 咨询 item

    # the question waits in the review inbox as a consult example; the step says who added what
    with engine.connect() as conn:
        items = [dict(r._mapping) for r in conn.execute(select(
            review_items.c.source, review_items.c.text, review_items.c.predicted_intent, review_items.c.correction,
            review_items.c.status))]
        steps = conn.execute(select(handoff_events.c.kind, handoff_events.c.actor, handoff_events.c.note)
                             .order_by(handoff_events.c.id)).all()
    assert items == [{"source": "knowledge", "text": QUESTION, "predicted_intent": "consult", "status": "new",
                      "correction": {"intent": "consult", "chosen_by": "agent", "topic": "housing_fund_loan"}}]
    assert [tuple(s) for s in steps][-1] == ("加入知识库", "user:desk", "housing_fund_loan")
    shown = await (await client.get(ok.headers["Location"])).text()
    assert "已加入知识库（housing_fund_loan）" in shown

    # the same id again is refused, and the file is as it was
    again = await post(client, f"/console/handoff/{hid}/knowledge", csrf, **form)
    assert again.status == 400 and "编号 housing_fund_loan 已存在" in await again.text()
    assert path.read_text(encoding="utf-8") == before + NEW_TOPIC


async def test_only_a_consult_item_can_be_added_and_only_by_agents(
        client: TestClient, engine: Engine, data_dir: Path) -> None:
    agents(engine)
    path = data_dir / "knowledge" / "consult.yml"
    before = path.read_text(encoding="utf-8")
    asked, _ = handoff.request(SqlAlchemyUnitOfWork(engine), "rest:resident-5", "rest", "asked",
                               datetime.now(timezone.utc), ServiceHours.parse("00:00-23:59", None))
    form = {"kb_id": "some_topic", "kb_title": "标题", "kb_keywords": "公积金", "kb_answer": "请拨打 12345 咨询。"}
    csrf = await login(client, "desk")
    page = await (await client.get(f"/console/handoff/{asked.id}")).text()
    assert "加入知识库" not in page
    refused = await post(client, f"/console/handoff/{asked.id}/knowledge", csrf, **form)
    assert refused.status == 409
    no_csrf = await client.post(f"/console/handoff/{asked.id}/knowledge", data=form)
    assert no_csrf.status == 403
    await client.post("/console/logout", data={"csrf": csrf})
    wcsrf = await login(client, "grid")
    assert (await post(client, f"/console/handoff/{asked.id}/knowledge", wcsrf, **form)).status == 404
    assert path.read_text(encoding="utf-8") == before
