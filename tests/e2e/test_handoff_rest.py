"""A REST resident asks for a person against the real Rasa and action servers: the hand-off
opens, the assistant stays silent while an agent holds the conversation (nothing reaches the
tracker), the agent's words come back with the next reply and from the poll, once, and after
the hand-back the assistant answers again."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import aiohttp
from sqlalchemy import func, select

from bot.domain.handoff import HANDED_BACK_NOTICE
from bot.services import handoff
from bot.storage.handoff import handoff_messages, handoffs
from bot.storage.uow import SqlAlchemyUnitOfWork
from tests.e2e.chat import Chat, Stack


def poll(stack: Stack, sender: str) -> list[dict]:
    async def go() -> list[dict]:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{stack.rasa_url}/webhooks/rest/messages", params={"sender": sender}) as r:
                assert r.status == 200, await r.text()
                return await r.json()
    return asyncio.run(go())


def test_a_person_takes_over_and_hands_back(stack: Stack) -> None:
    chat = Chat(stack)
    engine = stack.engine()
    with engine.connect() as conn:  # the shared stack's earlier tests may have left some waiting
        ahead = conn.execute(select(func.count()).select_from(handoffs).where(
            handoffs.c.state == "waiting", handoffs.c.language == "")).scalar_one()  # "": Chinese
    asked = chat.say("我要找人工客服")
    assert "action_human_handoff" in [e["name"] for e in asked["events"] if e.get("event") == "action"]
    assert [m["text"] for m in asked["messages"]][0].startswith(f"正在为您转接人工客服，请稍候。您前面还有 {ahead} 位")
    try:
        with engine.connect() as conn:
            [(hid, state, channel)] = conn.execute(select(handoffs.c.id, handoffs.c.state, handoffs.c.channel)
                                                   .where(handoffs.c.sender_id == chat.conversation_id)).all()
        assert (state, channel) == ("waiting", "rest")
        held = chat.say("我家暖气不热，楼里好几户都这样")
        assert held["messages"] == [] and held["events"] == []  # the assistant is silent, the tracker untouched
        now = datetime.now(timezone.utc)
        handoff.take(SqlAlchemyUnitOfWork(engine), hid, "user:agent1", "小王", now)
        handoff.say(SqlAlchemyUnitOfWork(engine), hid, "user:agent1", "请问您住哪个小区？", now)
        assert poll(stack, chat.sender) == [
            {"recipient_id": chat.sender, "text": "工作人员小王已接入，请问有什么可以帮您？"},
            {"recipient_id": chat.sender, "text": "请问您住哪个小区？"}]
        assert poll(stack, chat.sender) == []  # delivered once
        handoff.say(SqlAlchemyUnitOfWork(engine), hid, "user:agent1", "好的，已记下", now)
        answer = chat.say("锦绣小区")
        assert ([m["text"] for m in answer["messages"]], answer["events"]) == (["好的，已记下"], [])
        handoff.hand_back(SqlAlchemyUnitOfWork(engine), hid, "user:agent1", now)
        back = chat.say("楼下有人遛狗不牵绳")
        texts = [m["text"] for m in back["messages"]]
        assert texts[0] == HANDED_BACK_NOTICE and len(texts) >= 2  # then the assistant itself
        assert any(e.get("event") == "user" for e in back["events"])
        with engine.connect() as conn:
            kept = conn.execute(select(handoff_messages.c.text).where(handoff_messages.c.handoff_id == hid,
                                                                      handoff_messages.c.outgoing.is_(False))
                                .order_by(handoff_messages.c.id)).scalars().all()
        assert kept == ["我家暖气不热，楼里好几户都这样", "锦绣小区"]
    finally:
        engine.dispose()
