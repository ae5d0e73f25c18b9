"""Issue 19, at rest: every tracker store of ours writes phone and ID numbers masked — in
what the resident typed, the NLU's parse data, what the bot said and slot values — on the
embedded SQLite store and on the production PostgreSQL store (bot/rasa_ext/masked_events.py).
Checked on the raw stored JSON, exactly; references we made (a photo's name) stay whole."""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bot.rasa_ext.masked_events import masked_event
from bot.rasa_ext.sqlite_trackerstore import SQLiteTrackerStore
from bot.rasa_ext.trackerstore import ResilientSQLTrackerStore
from tests.conftest import PG_BASE_URL, SKIP_SERVICES_REASON

REPO = Path(__file__).resolve().parents[2]
PHONE, ID_NUMBER = "13912345678", "110101199003071234"
MASKED_PHONE, MASKED_ID = "139****5678", "110***********1234"
SAID = f"我的电话{PHONE}，身份证{ID_NUMBER}"
# a name our upload endpoint made: an eleven-digit run inside it is no phone number
PHOTO = "/widget/photo/a13800001111b00000000000000000cd.jpg"


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(str(REPO / "domain.yml"))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, domain: Domain,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple]:
    """(tracker store, read the stored event JSON of a sender) on a fresh database."""
    if request.param == "sqlite":
        path = tmp_path / "trackers.db"
        s = SQLiteTrackerStore(domain=domain, db=str(path))

        def stored(sender: str) -> list[str]:
            with closing(sqlite3.connect(path)) as conn:
                return [r[0] for r in conn.execute(
                    "SELECT data FROM qc_tracker_events WHERE sender_id = ? ORDER BY seq", (sender,))]

        try:
            yield s, stored
        finally:
            s.close()
        return
    if os.environ.get("QC_SKIP_SERVICES") == "1":
        pytest.skip(SKIP_SERVICES_REASON)
    schema = f"qc_masked_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_BASE_URL, future=True)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')  # generated name
    monkeypatch.setenv("POSTGRESQL_SCHEMA", schema)  # where Rasa's SQL store puts its table
    u = make_url(PG_BASE_URL)
    s = ResilientSQLTrackerStore(domain=domain, dialect="postgresql", host=u.host, port=u.port or 5432,
                                 db=u.database, username=u.username, password=u.password)

    def stored(sender: str) -> list[str]:
        with s.engine.connect() as conn:
            return list(conn.execute(text("SELECT data FROM events WHERE sender_id = :s ORDER BY id"),
                                     {"s": sender}).scalars())

    try:
        yield s, stored
    finally:
        s.engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def turn() -> list:
    """A complaint turn whose message gives a phone and an ID number: the message, its
    parse, the slots an action set (the phone raw, as an action before masking set it),
    and a reply repeating the number."""
    parse = {"intent": {"name": "inform", "confidence": 0.9},
             "entities": [{"entity": "place", "value": f"电话{PHONE}", "start": 0, "end": 13, "text": f"电话{PHONE}",
                           "extractor": "GazetteerEntityExtractor"},
                          {"entity": "photo", "value": PHOTO, "start": 0, "end": 0}],
             "text": SAID, "message_id": "m1"}
    return [
        UserUttered(SAID, parse["intent"], parse["entities"], parse_data=parse, timestamp=10.0, message_id="m1"),
        ActionExecuted("complaint_form", timestamp=10.1),
        SlotSet("phone", PHONE, timestamp=10.2),
        SlotSet("description", f"楼道堆物；身份证{ID_NUMBER}", timestamp=10.2),
        SlotSet("location_mentions", [{"text": f"{PHONE}号院", "level": "place"}], timestamp=10.2),
        SlotSet("photo", PHOTO, timestamp=10.2),
        BotUttered(f"您的电话：{PHONE}", {"buttons": [{"title": f"打给{PHONE}", "payload": "/affirm"}]},
                   timestamp=10.3),
        ActionExecuted("action_listen", timestamp=10.4),
    ]


def test_stored_events_hold_no_phone_or_id_number(store, domain: Domain) -> None:
    s, stored = store
    sender = "resident-mask-" + uuid.uuid4().hex[:6]
    tracker = asyncio.run(s.get_or_create_tracker(sender))
    for event in turn():
        tracker.update(event)
    asyncio.run(s.save(tracker))

    rows = stored(sender)
    raw = "\n".join(rows)
    assert PHONE not in raw and ID_NUMBER not in raw
    assert MASKED_PHONE in raw and MASKED_ID in raw
    events = [json.loads(r) for r in rows]
    user = next(e for e in events if e["event"] == "user")
    said = f"我的电话{MASKED_PHONE}，身份证{MASKED_ID}"
    assert (user["text"], user["parse_data"]["text"]) == (said, said)
    assert [(e["entity"], e["value"]) for e in user["parse_data"]["entities"]] == [
        ("place", f"电话{MASKED_PHONE}"), ("photo", PHOTO)]
    assert user["parse_data"]["entities"][0]["text"] == f"电话{MASKED_PHONE}"
    slots = {e["name"]: e["value"] for e in events if e["event"] == "slot"}
    assert slots == {"phone": MASKED_PHONE, "description": f"楼道堆物；身份证{MASKED_ID}",
                     "location_mentions": [{"text": f"{MASKED_PHONE}号院", "level": "place"}], "photo": PHOTO}
    bot = next(e for e in events if e["event"] == "bot")
    assert bot["text"] == f"您的电话：{MASKED_PHONE}"
    assert bot["data"]["buttons"] == [{"title": f"打给{MASKED_PHONE}", "payload": "/affirm"}]
    # everything else as Rasa serialises it
    assert events == [masked_event(e.as_dict()) for e in tracker.events]

    # the next turn (any Rasa server) reads the masked conversation back
    back = asyncio.run(s.retrieve(sender))
    assert back.get_slot("phone") == MASKED_PHONE and back.get_slot("photo") == PHOTO
    assert back.latest_message.text == said


def test_a_button_payload_is_stored_as_sent(store) -> None:
    s, stored = store
    sender = "resident-payload-" + uuid.uuid4().hex[:6]
    tracker = asyncio.run(s.get_or_create_tracker(sender))
    payload = '/inform{"community":"150102001001"}'
    tracker.update(UserUttered(payload, {"name": "inform", "confidence": 1.0}, timestamp=5.0))
    asyncio.run(s.save(tracker))
    user = [json.loads(r) for r in stored(sender) if json.loads(r)["event"] == "user"]
    assert [u["text"] for u in user] == [payload]
