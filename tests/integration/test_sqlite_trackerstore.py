"""The embedded tracker store (bot/rasa_ext/sqlite_trackerstore.py) on a real SQLite file: exactly
the events Rasa saved come back, each stored once, sessions as Rasa's SQL store cuts them,
and a second store on the same file (another process, a swapped-in model) sees them."""
from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.rasa_ext.sqlite_trackerstore import SQLiteTrackerStore

DOMAIN = Domain.from_yaml("""
version: "3.1"
intents: [dog, affirm]
slots:
  category:
    type: text
    mappings: [{type: custom}]
""")


def run(coro):
    return asyncio.run(coro)


def store(path: Path) -> SQLiteTrackerStore:
    return SQLiteTrackerStore(domain=DOMAIN, db=str(path))


def rows(path: Path, sender: str):
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT seq, type_name FROM qc_tracker_events WHERE sender_id = ? ORDER BY seq",
                            (sender,)).fetchall()


def user(text: str, intent: str, ts: float) -> UserUttered:
    return UserUttered(text, {"name": intent, "confidence": 1.0}, timestamp=ts)


def dicts(tracker: DialogueStateTracker):
    return [e.as_dict() for e in tracker.events]


def test_round_trip_and_append_only(tmp_path: Path) -> None:
    s = store(tmp_path / "t.db")
    t = run(s.get_or_create_tracker("r1"))
    assert run(s.exists("r1"))  # created with its first action_listen
    t.update(user("楼下遛狗不牵绳", "dog", 1.0))
    t.update(SlotSet("category", "dog", timestamp=2.0))
    run(s.save(t))
    t.update(ActionExecuted("action_listen", timestamp=3.0))
    run(s.save(t))
    run(s.save(t))  # nothing new: nothing written
    assert rows(tmp_path / "t.db", "r1") == [(0, "action"), (1, "user"), (2, "slot"), (3, "action")]
    back = run(s.retrieve("r1"))
    assert dicts(back) == dicts(t)
    assert back.get_slot("category") == "dog"
    assert run(s.keys()) == ["r1"]
    assert run(s.retrieve("nobody")) is None and not run(s.exists("nobody"))


def test_latest_session_and_full_tracker(tmp_path: Path) -> None:
    s = store(tmp_path / "t.db")
    t = DialogueStateTracker("r2", DOMAIN.slots)
    for e in (ActionExecuted("action_session_start", timestamp=1.0), SessionStarted(timestamp=1.0),
              ActionExecuted("action_listen", timestamp=1.0), user("暖气不热", "dog", 2.0),
              ActionExecuted("action_session_start", timestamp=10.0), SessionStarted(timestamp=10.0),
              ActionExecuted("action_listen", timestamp=10.0)):
        t.update(e)
    run(s.save(t))
    latest = run(s.retrieve("r2"))
    assert [e.type_name for e in latest.events] == ["session_started", "action"]
    full = run(s.retrieve_full_tracker("r2"))
    assert dicts(full) == dicts(t)
    # each goes on from where it was read: one new event each, stored once
    latest.update(user("还是不热", "dog", 11.0))
    run(s.save(latest))
    full = run(s.retrieve_full_tracker("r2"))
    full.update(ActionExecuted("action_listen", timestamp=12.0))
    run(s.save(full))
    assert [seq for seq, _ in rows(tmp_path / "t.db", "r2")] == list(range(9))
    assert [e.type_name for e in run(s.retrieve("r2")).events] == ["session_started", "action", "user", "action"]


def test_a_second_store_on_the_file_sees_every_conversation(tmp_path: Path) -> None:
    a, b = store(tmp_path / "t.db"), store(tmp_path / "t.db")
    ta = run(a.get_or_create_tracker("ra"))
    tb = run(b.get_or_create_tracker("rb"))
    ta.update(user("小广告", "dog", 1.0))
    tb.update(user("下水道堵了", "dog", 1.0))
    run(a.save(ta))
    run(b.save(tb))
    assert dicts(run(b.retrieve("ra"))) == dicts(ta)
    assert dicts(run(a.retrieve("rb"))) == dicts(tb)
    a.close()
    assert dicts(run(store(tmp_path / "t.db").retrieve("ra"))) == dicts(ta)  # reopened: still there
    with sqlite3.connect(tmp_path / "t.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_tracker_that_does_not_continue_the_stored_one_is_refused_and_nothing_written(tmp_path: Path) -> None:
    s = store(tmp_path / "t.db")
    t = run(s.get_or_create_tracker("r3"))
    stale = run(s.retrieve("r3"))
    t.update(user("遛狗", "dog", 1.0))
    t.update(ActionExecuted("action_listen", timestamp=2.0))
    run(s.save(t))
    with pytest.raises(RuntimeError, match="does not continue"):
        run(s.save(stale))  # read before the save above: 1 event, 3 stored
    assert len(rows(tmp_path / "t.db", "r3")) == 3
    t.update(user("还在遛", "dog", 3.0))
    run(s.save(t))  # the store is usable after the refusal (its transaction was rolled back)
    assert len(rows(tmp_path / "t.db", "r3")) == 4
