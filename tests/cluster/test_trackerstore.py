"""bot.rasa_ext.trackerstore.ResilientSQLTrackerStore on the real PostgreSQL, side by side with Rasa's
own SQLTrackerStore: the same saves leave the same rows and the same retrieves return the
same trackers (latest session, all sessions), but for phone and ID numbers masked in ours;
the event broker gets the same events once; a failed write is retried without duplicates, an outage ends in TrackerStoreUnavailable
with nothing published, and a save whose request is cancelled still stores its turn
before the cancellation goes on (the conversation lock is held until then)."""
from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from bot.rasa_ext.masked_events import masked_event
from tests.cluster.conftest import require_services

TRACKERS = Path(__file__).resolve().parents[1] / "data" / "trackers"
REPO = Path(__file__).resolve().parents[2]


class RecordingBroker:
    def __init__(self) -> None:
        self.published: list = []

    def publish(self, event, headers=None) -> None:
        self.published.append(event)


@pytest.fixture(scope="module")
def domain():
    from rasa.shared.core.domain import Domain

    return Domain.load(str(REPO / "domain.yml"))


@pytest.fixture
def schemas(monkeypatch):
    """Two fresh schemas (ours, Rasa's), dropped after; POSTGRESQL_SCHEMA is what Rasa reads."""
    from sqlalchemy import create_engine

    from tests.conftest import PG_BASE_URL

    require_services()
    tag = uuid.uuid4().hex[:10]
    names = (f"qc_ts_ours_{tag}", f"qc_ts_rasa_{tag}")
    admin = create_engine(PG_BASE_URL, future=True)
    with admin.begin() as conn:
        for name in names:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')  # generated names
    try:
        yield names
    finally:
        with admin.begin() as conn:
            for name in names:
                conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
        admin.dispose()


def _store(cls, schema, monkeypatch, domain, broker, **kwargs):
    from sqlalchemy.engine import make_url

    from tests.conftest import PG_BASE_URL

    u = make_url(PG_BASE_URL)
    monkeypatch.setenv("POSTGRESQL_SCHEMA", schema)
    return cls(domain=domain, dialect="postgresql", host=u.host, port=u.port or 5432, db=u.database,
               username=u.username, password=u.password, event_broker=broker, **kwargs)


def _conversation():
    """Two sessions: a whole complaint, then (an hour later) a session start and a status question."""
    first = json.loads((TRACKERS / "confirm_submit.json").read_text(encoding="utf-8"))["events"]
    second = json.loads((TRACKERS / "ask_status_own_number.json").read_text(encoding="utf-8"))["events"]
    shift = max(e["timestamp"] for e in first) + 3600 - min(e["timestamp"] for e in second)
    return first + [{**e, "timestamp": e["timestamp"] + shift} for e in second]


def _rows(store):
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT sender_id, type_name, timestamp, intent_name, action_name, data FROM events ORDER BY id"))]


def _dicts(tracker):
    return None if tracker is None else [e.as_dict() for e in tracker.events]


def test_same_rows_trackers_and_broker_events_as_rasas_store(schemas, monkeypatch, domain):
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.rasa_ext.trackerstore import ResilientSQLTrackerStore

    events = _conversation()
    cut = [5, 12, 30, 50, 53, 60, 90, len(events)]  # turn ends, the second session starts at 51
    results = {}
    for cls, schema in ((ResilientSQLTrackerStore, schemas[0]), (SQLTrackerStore, schemas[1])):
        broker = RecordingBroker()
        store = _store(cls, schema, monkeypatch, domain, broker)
        seen = []

        async def run():
            for sender in ("resident-a", "resident-b"):
                assert await store.retrieve(sender) is None
                for i, n in enumerate(cut):
                    # each turn: the tracker as Rasa holds it (latest session, as retrieved), plus new events
                    stored = await store.retrieve(sender)
                    seen.append(_dicts(stored))
                    base = [] if stored is None else [e.as_dict() for e in stored.events]
                    start = 0 if i == 0 else cut[i - 1]
                    await store.save(DialogueStateTracker.from_dict(sender, base + events[start:n], domain.slots))
                    await store.save(DialogueStateTracker.from_dict(sender, base + events[start:n], domain.slots))
                seen.append(_dicts(await store.retrieve(sender)))
                seen.append(_dicts(await store.retrieve_full_tracker(sender)))
                seen.append(await store.exists(sender))
            seen.append(sorted(await store.keys()))

        asyncio.run(run())
        results[cls.__name__] = (_rows(store), seen, broker.published)
        store.engine.dispose()
    ours, rasas = results["ResilientSQLTrackerStore"], results["SQLTrackerStore"]
    assert len(ours[0]) >= 2 * len(events)
    # same rows (Rasa's quirks included: its latest-session count), phone numbers masked in ours
    assert "13812345678" in str(rasas[0]) and "13812345678" not in str(ours[0])
    assert ours[0] == [(*r[:5], json.dumps(masked_event(json.loads(r[5])))) for r in rasas[0]]
    # same trackers, read back masked
    assert ours[1] == [[masked_event(e) for e in s] if isinstance(s, list) and s and isinstance(s[0], dict) else s
                       for s in rasas[1]]
    # same events to the broker (those Rasa's latest-session count sends again come from the
    # tracker read back: masked in ours)
    assert [masked_event(e) for e in ours[2]] == [masked_event(e) for e in rasas[2]]
    assert len(ours[2]) >= 2 * len(events)
    assert ours[1][-2] is True and ours[1][-1] == ["resident-a", "resident-b"]


def test_a_failed_write_is_retried_once_without_duplicates(schemas, monkeypatch, domain):
    from rasa.shared.core.trackers import DialogueStateTracker
    from sqlalchemy.exc import OperationalError

    from bot.rasa_ext.trackerstore import ResilientSQLTrackerStore

    broker = RecordingBroker()
    store = _store(ResilientSQLTrackerStore, schemas[0], monkeypatch, domain, broker, retry_seconds=5)
    events = _conversation()[:20]
    original = store._insert_and_close
    calls = []

    def flaky(conn, rows):
        calls.append(len(rows))
        if len(calls) == 1:
            conn.close()
            raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))
        original(conn, rows)

    monkeypatch.setattr(store, "_insert_and_close", flaky)
    asyncio.run(store.save(DialogueStateTracker.from_dict("r", events, domain.slots)))
    assert calls == [20, 20]
    assert [json.loads(r[5]) for r in _rows(store)] == [e.as_dict() for e in
                                                       DialogueStateTracker.from_dict("r", events, domain.slots).events]
    assert len(broker.published) == 20  # published once, before the first attempt's write
    store.engine.dispose()


def test_an_outage_raises_unavailable_and_publishes_nothing(schemas, monkeypatch, domain):
    import sqlalchemy as sa
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.rasa_ext.trackerstore import ResilientSQLTrackerStore, TrackerStoreUnavailable

    broker = RecordingBroker()
    store = _store(ResilientSQLTrackerStore, schemas[0], monkeypatch, domain, broker, retry_seconds=0.6)
    store.engine.dispose()
    store.engine = sa.create_engine("postgresql://postgres@127.0.0.1:9/none", pool_pre_ping=True,
                                    isolation_level="AUTOCOMMIT")  # nothing listens there
    tracker = DialogueStateTracker.from_dict("r", _conversation()[:5], domain.slots)
    with pytest.raises(TrackerStoreUnavailable):
        asyncio.run(store.save(tracker))
    with pytest.raises(TrackerStoreUnavailable):
        asyncio.run(store.retrieve("r"))
    assert broker.published == []


def test_a_cancelled_save_stores_its_turn_before_the_cancellation_goes_on(schemas, monkeypatch, domain):
    import time

    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.rasa_ext.trackerstore import ResilientSQLTrackerStore

    store = _store(ResilientSQLTrackerStore, schemas[0], monkeypatch, domain, RecordingBroker())
    events = _conversation()[:12]
    original = store._insert_and_close

    def slow(conn, rows):
        time.sleep(0.3)  # the request is cancelled meanwhile
        original(conn, rows)

    monkeypatch.setattr(store, "_insert_and_close", slow)

    async def run():
        task = asyncio.ensure_future(store.save(DialogueStateTracker.from_dict("r", events, domain.slots)))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return len(_rows(store))  # at once, as the lock store's cleanup would run

    assert asyncio.run(run()) == 12
    store.engine.dispose()


def test_an_erasing_turn_deletes_the_conversation_and_only_it(schemas, monkeypatch, domain):
    """删除我的信息 on the production store (bot/rasa_ext/erasure.py): a turn that sets erased_at
    deletes every stored event of that conversation (the erasing turn is not written), on the
    real PostgreSQL; another conversation's rows stay exactly as they were."""
    from rasa.shared.core.events import ActionExecuted, SlotSet, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.rasa_ext.trackerstore import ResilientSQLTrackerStore

    broker = RecordingBroker()
    store = _store(ResilientSQLTrackerStore, schemas[0], monkeypatch, domain, broker)
    events = _conversation()[:30]

    async def run():
        for sender in ("resident-a", "resident-b"):
            await store.save(DialogueStateTracker.from_dict(sender, events, domain.slots))
        before_b = [r for r in _rows(store) if r[0] == "resident-b"]
        tracker = await store.retrieve("resident-a")
        tracker.update(UserUttered("删除我的信息"))
        tracker.update(ActionExecuted("action_erase_my_data"))
        await store.save(tracker)  # asked, not yet erased: kept
        assert len([r for r in _rows(store) if r[0] == "resident-a"]) == len(events) + 2
        tracker = await store.retrieve("resident-a")
        tracker.update(UserUttered("/affirm"))
        tracker.update(ActionExecuted("action_erase_my_data"))
        tracker.update(SlotSet("erased_at", 1_800_000_000.0))
        tracker.update(ActionExecuted("action_listen"))
        await store.save(tracker)
        assert await store.retrieve("resident-a") is None
        assert await store.retrieve_full_tracker("resident-a") is None
        assert [r for r in _rows(store) if r[0] == "resident-a"] == []
        assert [r for r in _rows(store) if r[0] == "resident-b"] == before_b
        assert sorted(await store.keys()) == ["resident-b"]
        # a retried save of the erasing turn (the conversation already gone) writes nothing back
        await store.save(tracker)
        assert [r for r in _rows(store) if r[0] == "resident-a"] == []

    try:
        asyncio.run(run())
    finally:
        store.engine.dispose()
