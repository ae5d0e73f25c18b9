"""Custom actions on recorded trackers, against a real ticket store.

In the style of RasaHQ's financial-demo: every test loads a tracker that the Rasa server
really sent to the action server (tests/data/trackers/*.json, recorded with
`rasa run --enable-api` + `rasa run actions` behind a recording proxy, model
models/20261124-222505-district-tee.tar.gz), runs the action with a CollectingDispatcher
and the domain, and asserts the EXACT events returned and the response keys (with their
variables) dispatched — never rendered text. Filing tickets goes through the real
SQLAlchemy store: a temporary SQLite file and a PostgreSQL schema (the `pg_url` fixture).

The trackers were recorded on 2026-11-24 at 22:29 UTC (06:29 on the 25th in Hohhot):
the filing tests freeze the clock of actions/complaint.py at that moment, so ticket
numbers and deadlines are those the recorded conversation produced.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

import actions.complaint as complaint_module
import actions.status as status_module
from actions.complaint import (
    ActionAskConfirm,
    ActionAskLocation,
    ActionInformOutsideForm,
    ActionSubmitComplaint,
    ValidateComplaintForm,
)
from actions.consult import ActionConsult
from actions.fallback import ActionClarify
from actions.status import ActionTicketStatus
from bot.console.uow import ConsoleUnitOfWork
from bot.conversation import ComplaintForm
from bot.domain.model import CATEGORIES
from bot.ops import runtime
from bot.rasa_ext.masked_events import masked_event
from bot.security.guesses import GuessThrottle
from bot.storage.engine import init_db, make_engine
from bot.storage.pending_phones import keep_phone, pending_phones
from bot.storage.tables import metadata, ticket_events, ticket_reports, tickets

REPO = Path(__file__).resolve().parents[2]
TRACKERS = REPO / "tests" / "data" / "trackers"
CATALOGUE = yaml.safe_load((REPO / "data" / "routing" / "catalogue.yml").read_text(encoding="utf-8"))

# When confirm_submit.json was recorded (its latest_event_time): 06:29 on 25 Nov in Hohhot.
RECORDED_AT = datetime(2026, 11, 24, 22, 29, 52, tzinfo=timezone.utc)
TICKET = "QC-261125-0001"
TICKET_RE = re.compile(r"QC-\d{6}-\d{4}")
# The draft id the recorded form run got (uuid4().hex); validation tests reuse it.
DRAFT_ID = "e78aa6910544412b986a4412fb851926"

RESIDENT_A = "resident-7f3a91"  # filed the dog complaint, then asked about it by number
RESIDENT_C = "resident-c90e5d"  # the same complaint a few seconds later (merged)
RESIDENT_E = "resident-e3071a"  # filed nothing; asked by number and without one

ACTIVATION_TEXT = "新城区公主府社区楼下有人遛狗不牵绳"
LOCATION_LABEL = "新城区 海拉尔东路街道 公主府社区居委会"
MENTIONS_A = [
    {"text": "新城区", "level": "district", "value": "新城区", "start": 0, "end": 3},
    {"text": "公主府社区", "level": "community", "value": "公主府社区", "start": 3, "end": 8},
]
JINXIU_CANDIDATES = ["150102007003", "150105006034"]  # 锦绣社区 in 新城区 and in 赛罕区

# What a filed (or replayed, or merged) complaint leaves behind: the form slots cleared,
# category last, then the outcome. Spelled out so any change in the reset shows up.
RESET_EVENTS = [
    SlotSet("location", None),
    SlotSet("description", None),
    SlotSet("photo", None),
    SlotSet("phone", None),
    SlotSet("confidential", None),
    SlotSet("confirm", None),
    SlotSet("location_status", None),
    SlotSet("location_candidates", None),
    SlotSet("location_mentions", None),
    SlotSet("location_asked", None),
    SlotSet("district_code", None),
    SlotSet("street_code", None),
    SlotSet("community_code", None),
    SlotSet("draft_id", None),
    SlotSet("pending_description", None),
    SlotSet("prefilled", None),
    SlotSet("category_offered", None),
    SlotSet("category", None),
]

# Keys CollectingDispatcher puts in every message; everything else is a response variable.
MESSAGE_KEYS = {"text", "buttons", "elements", "custom", "template", "response", "image", "attachment"}
PLACEHOLDER = re.compile(r"\{(\w+)\}")


# --- recorded trackers ------------------------------------------------------------


def tracker_state(name: str) -> dict[str, Any]:
    return json.loads((TRACKERS / f"{name}.json").read_text(encoding="utf-8"))


def tracker(name: str) -> Tracker:
    return Tracker.from_dict(tracker_state(name))


def after(state: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """The tracker state once Rasa has applied an action's events (as the server does)."""
    new = copy.deepcopy(state)
    for e in events:
        if e["event"] == "slot":
            new["slots"][e["name"]] = e["value"]
    new["events"] = new["events"] + copy.deepcopy(events)
    return new


# --- running actions ------------------------------------------------------------


@pytest.fixture(scope="module")
def domain() -> dict[str, Any]:
    # rasa_sdk hands actions the domain as a plain dict
    return yaml.safe_load((REPO / "domain.yml").read_text(encoding="utf-8"))


def run(action: Action, tracker_: Tracker, domain: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """Run an action as the action server would; returns (events, dispatched messages)."""
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker_, domain))
    check_against_domain(events, dispatcher.messages, domain)
    return events, dispatcher.messages


def check_against_domain(events: list[dict], messages: list[dict], domain: dict[str, Any]) -> None:
    """Every slot set exists; every message is a domain response given all its variables."""
    slots = set(domain["slots"]) | {"requested_slot"}
    for e in events:
        assert e["event"] == "slot", e
        assert e["name"] in slots, f"slot {e['name']!r} is not in domain.yml"
    for m in messages:
        key = m["response"]
        assert m["text"] is None, f"{key}: actions choose responses, wording lives in domain.yml"
        assert key in domain["responses"], f"response {key!r} is not in domain.yml"
        for variant in domain["responses"][key]:
            missing = set(PLACEHOLDER.findall(variant.get("text", ""))) - set(m)
            assert not missing, f"{key} needs variables {missing}"


def said(messages: list[dict]) -> list[tuple[str, dict[str, Any]]]:
    """(response key, its variables) per message: what the resident is told, not how."""
    return [(m["response"], {k: v for k, v in m.items() if k not in MESSAGE_KEYS}) for m in messages]


def payloads(message: dict) -> list[str]:
    return [b["payload"] for b in message["buttons"]]


# --- the ticket store -------------------------------------------------------------


@dataclass
class Store:
    backend: str
    url: str
    engine: Engine

    def rows(self, table) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.id))]

    def count(self, table) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()


@pytest.fixture(autouse=True)
def no_default_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An action touching the store without the `db` fixture must not create var/qingcheng.db."""

    def refuse(*_a: Any, **_k: Any) -> None:
        pytest.fail("an action opened the default database; use the `db` fixture")

    runtime.reset_engine(None)
    monkeypatch.setattr(runtime, "make_engine", refuse)
    yield
    runtime.reset_engine(None)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh ticket store the actions write to (bot.ops.runtime points at it)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'actions.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    engine = make_engine(url)
    metadata.drop_all(engine)  # PostgreSQL: the schema lives for the session, tables per test
    init_db(engine)
    runtime.reset_engine(engine)
    try:
        yield Store(request.param, url, engine)
    finally:
        runtime.reset_engine(None)
        engine.dispose()


def read_only_engine(store: Store) -> Engine:
    """The same database, but every connection refuses writes (as a full or read-only disk would)."""
    engine = make_engine(store.url)

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if store.backend == "sqlite":
            cur.execute("PRAGMA query_only = ON")
        else:
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        cur.close()
        if store.backend != "sqlite":
            dbapi_conn.commit()  # psycopg2 opened a transaction for the SET

    return engine


class Clock:
    """Freezes datetime.now() as actions/complaint.py sees it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = RECORDED_AT
        clock = self

        class FrozenDatetime(datetime):
            @classmethod
            def now(cls, tz=None):  # type: ignore[override]
                return clock.now.astimezone(tz) if tz else clock.now.replace(tzinfo=None)

        monkeypatch.setattr(complaint_module, "datetime", FrozenDatetime)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def fixed_draft_id(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(complaint_module, "_form", lambda: ComplaintForm(runtime.resolver(), new_id=lambda: DRAFT_ID))
    return DRAFT_ID


def submit(name_or_state: str | dict, domain: dict) -> tuple[list[dict], list[dict]]:
    state = tracker_state(name_or_state) if isinstance(name_or_state, str) else name_or_state
    return run(ActionSubmitComplaint(), Tracker.from_dict(state), domain)


def filed_events(number: str) -> list[dict]:
    return RESET_EVENTS + [SlotSet("submit_failed", False), SlotSet("ticket_number", number),
                           SlotSet("kept_photo", None)]


# --- the complaint form ------------------------------------------------------------


def test_recorded_activation_is_a_dog_complaint_with_gazetteer_entities() -> None:
    state = tracker_state("form_activation_dog")
    msg = state["latest_message"]
    assert (state["sender_id"], msg["text"], msg["intent"]["name"]) == (RESIDENT_A, ACTIVATION_TEXT, "dog")
    assert [(e["entity"], e["value"], e["extractor"]) for e in msg["entities"]] == [
        ("district", "新城区", "GazetteerEntityExtractor"),
        ("community", "公主府社区", "GazetteerEntityExtractor"),
    ]
    assert state["active_loop"]["name"] == "complaint_form"
    assert state["slots"]["requested_slot"] is None
    assert set(state["slots"]) >= set(yaml.safe_load((REPO / "domain.yml").read_text(encoding="utf-8"))["slots"])


def test_activation_takes_category_location_and_description_from_the_first_message(
    domain: dict, fixed_draft_id: str
) -> None:
    events, messages = run(ValidateComplaintForm(), tracker("form_activation_dog"), domain)

    assert events == [
        SlotSet("draft_id", fixed_draft_id),
        SlotSet("confirm", None),
        SlotSet("category_offered", None),
        SlotSet("category", "dog"),
        SlotSet("pending_description", None),
        SlotSet("location_mentions", MENTIONS_A),
        SlotSet("location", LOCATION_LABEL),
        SlotSet("location_status", "resolved"),
        SlotSet("location_candidates", None),
        SlotSet("district_code", "150102"),
        SlotSet("street_code", "150102001"),
        SlotSet("community_code", "150102001001"),
        SlotSet("description", ACTIVATION_TEXT),
        SlotSet("requested_slot", "photo"),  # category, location, description: already answered
    ]
    assert messages == []


def test_an_ambiguous_community_is_not_guessed_and_the_resident_chooses(domain: dict) -> None:
    state = tracker_state("location_answer_ambiguous")
    assert state["latest_message"]["text"] == "锦绣社区"
    assert state["slots"]["requested_slot"] == "location"

    events, messages = run(ValidateComplaintForm(), Tracker.from_dict(state), domain)

    assert events == [
        SlotSet("location_mentions", [{"text": "锦绣社区", "level": "community", "value": "锦绣社区", "start": 0, "end": 4}]),
        SlotSet("location", None),
        SlotSet("location_status", "ambiguous"),
        SlotSet("location_candidates", JINXIU_CANDIDATES),
        SlotSet("location_asked", 1),
        SlotSet("requested_slot", "location"),  # asked again, now with choices
    ]
    assert messages == []

    # The form then asks for the location again: the tracker Rasa sends is this one.
    asked = after(state, events)
    recorded = tracker_state("ask_location_ambiguous")
    assert asked["slots"] == recorded["slots"]
    for state_ in (asked, recorded):
        events, messages = run(ActionAskLocation(), Tracker.from_dict(state_), domain)
        assert events == []
        assert said(messages) == [("utter_ask_location_choose", {"mention": "锦绣社区"})]
        assert payloads(messages[0]) == [f'/inform{{"community":"{code}"}}' for code in JINXIU_CANDIDATES] + ["/deny"]


def test_ask_location_without_a_mention_asks_where(domain: dict) -> None:
    state = tracker_state("ask_location_ambiguous")
    state["slots"].update(location_status=None, location_candidates=None, location_mentions=None)
    events, messages = run(ActionAskLocation(), Tracker.from_dict(state), domain)
    assert (events, said(messages)) == ([], [("utter_ask_location_where", {})])
    assert payloads(messages[0]) == []


def test_confirm_answer_ends_the_form(domain: dict) -> None:
    events, messages = run(ValidateComplaintForm(), tracker("form_confirm_answer"), domain)
    assert events == [SlotSet("confirm", True), SlotSet("requested_slot", None)]
    assert messages == []


def test_summary_masks_the_phone(domain: dict) -> None:
    events, messages = run(ActionAskConfirm(), tracker("ask_confirm_with_phone"), domain)
    assert events == []
    assert said(messages) == [
        (
            "utter_complaint_summary",
            {
                "category_name": "文明养犬",
                "location": LOCATION_LABEL,
                "description": ACTIVATION_TEXT,
                "photo": "无",
                "phone": "138****5678",
                "confidential": "保密：是",
                "prefill_note": "",
            },
        )
    ]
    assert "13812345678" not in json.dumps(messages, ensure_ascii=False)


# --- filing ------------------------------------------------------------------------


def test_confirmed_complaint_lands_in_the_store(db: Store, domain: dict, clock: Clock) -> None:
    state = tracker_state("confirm_submit")
    assert state["slots"]["confirm"] is True and state["active_loop"] == {}

    events, messages = submit(state, domain)

    dog = CATALOGUE["categories"]["dog"]
    assert said(messages) == [
        (
            "utter_complaint_filed",
            {
                "number": TICKET,
                "lead": CATALOGUE["departments"][dog["lead"]],
                "co_line": "协办/属地：市城市管理综合执法局、海拉尔东路街道\n",
                "dispatch_label": "一般",
                "deadline": "11月26日 06:29",  # 签收, one working day
                "finish_deadline": "12月02日 06:29",  # 办结, five working days (the resident was told 签收's before)
            },
        )
    ]
    assert TICKET_RE.fullmatch(messages[0]["number"])
    assert events == filed_events(TICKET)

    [ticket] = db.rows(tickets)
    assert ticket["number"] == TICKET
    assert ticket["category"] == "dog"
    assert (ticket["district_code"], ticket["street_code"], ticket["community_code"]) == (
        "150102", "150102001", "150102001001",
    )
    assert ticket["lead_queue"] == dog["lead"] == "police_dog"
    assert list(ticket["co_queues"]) == [*dog["co"], "street:150102001"]
    assert ticket["dispatch_class"] == dog["dispatch_class"]
    assert ticket["state"] == "派单"
    assert ticket["report_count"] == 1
    assert ticket["description"] == ACTIVATION_TEXT
    assert ticket["location_text"] == LOCATION_LABEL
    assert ticket["created_at"] == RECORDED_AT
    assert ticket["deadline_at"] == RECORDED_AT + timedelta(hours=24)

    [report] = db.rows(ticket_reports)
    assert report["ticket_id"] == ticket["id"]
    assert report["sender_id"] == RESIDENT_A
    assert report["channel"] == "rest"
    assert report["phone"] == "13812345678"
    assert report["photo"] is None  # skipped ("none") is not a photo
    assert report["confidential"] is True
    assert report["idempotency_key"] == f"{RESIDENT_A}:{DRAFT_ID}"

    assert [(e["kind"], e["to_state"]) for e in db.rows(ticket_events)] == [("受理", "受理"), ("派单", "派单")]


def test_a_retried_submission_returns_the_same_ticket(db: Store, domain: dict, clock: Clock) -> None:
    submit("confirm_submit", domain)
    clock.now = RECORDED_AT + timedelta(seconds=30)  # the resident taps "确认提交" again

    events, messages = submit("confirm_submit", domain)

    assert said(messages) == [("utter_complaint_replay", {"number": TICKET})]
    assert events == filed_events(TICKET)
    assert db.count(tickets) == 1
    assert db.count(ticket_reports) == 1
    assert db.rows(tickets)[0]["report_count"] == 1


def test_same_complaint_from_a_second_resident_is_merged(db: Store, domain: dict, clock: Clock) -> None:
    submit("confirm_submit", domain)
    second = tracker_state("confirm_submit_second_resident")
    assert second["sender_id"] == RESIDENT_C
    assert second["slots"]["community_code"] == "150102001001"
    clock.now = RECORDED_AT + timedelta(seconds=8)

    events, messages = submit(second, domain)

    assert said(messages) == [("utter_complaint_merged", {"number": TICKET, "count": 2})]
    assert events == filed_events(TICKET)
    [ticket] = db.rows(tickets)
    assert ticket["report_count"] == 2
    assert ticket["state"] == "派单"
    assert [(r["sender_id"], r["ticket_id"]) for r in db.rows(ticket_reports)] == [
        (RESIDENT_A, ticket["id"]),
        (RESIDENT_C, ticket["id"]),
    ]
    assert [e["kind"] for e in db.rows(ticket_events)] == ["受理", "派单", "并单"]


def test_same_complaint_after_the_merge_window_is_a_new_ticket(db: Store, domain: dict, clock: Clock) -> None:
    submit("confirm_submit", domain)
    clock.now = RECORDED_AT + timedelta(days=8)

    events, messages = submit("confirm_submit_second_resident", domain)

    [(key, variables)] = said(messages)
    assert (key, variables["number"]) == ("utter_complaint_filed", "QC-261203-0001")
    assert events == filed_events("QC-261203-0001")
    assert [(t["number"], t["report_count"]) for t in db.rows(tickets)] == [(TICKET, 1), ("QC-261203-0001", 1)]


def _assert_failed_and_nothing_stored(db: Store, events: list[dict], messages: list[dict]) -> None:
    assert said(messages) == [("utter_submit_failed", {})]
    assert events == [SlotSet("submit_failed", True)]  # the answers stay for the retry
    assert db.count(tickets) == 0
    assert db.count(ticket_reports) == 0
    assert db.count(ticket_events) == 0


def test_a_database_that_refuses_writes_fails_loudly_and_keeps_the_answers(
    db: Store, domain: dict, clock: Clock
) -> None:
    read_only = read_only_engine(db)
    runtime.reset_engine(read_only)
    try:
        events, messages = submit("confirm_submit", domain)
    finally:
        runtime.reset_engine(db.engine)
        read_only.dispose()
    _assert_failed_and_nothing_stored(db, events, messages)

    # The resident says "提交" again (rule: submit_failed + affirm) once the store is back.
    retry = after(tracker_state("confirm_submit"), events)
    events, messages = submit(retry, domain)
    assert [k for k, _ in said(messages)] == ["utter_complaint_filed"]
    assert events == filed_events(TICKET)
    assert db.count(tickets) == 1


def test_an_operational_error_from_the_store_fails_loudly(
    db: Store, domain: dict, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_a: Any, **_k: Any) -> None:
        raise OperationalError("INSERT INTO tickets ...", {}, Exception("disk I/O error"))

    # actions/complaint.py imported the function itself: patch the name it calls
    monkeypatch.setattr(complaint_module, "file_complaint", broken)
    events, messages = submit("confirm_submit", domain)
    _assert_failed_and_nothing_stored(db, events, messages)


def test_a_filing_that_times_out_is_not_filed_twice_on_retry(
    db: Store, domain: dict, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = complaint_module.file_complaint

    def slow(*args: Any) -> Any:
        time.sleep(0.5)  # the store answers after the action gave up
        return real(*args)

    monkeypatch.setattr(runtime, "STORE_TIMEOUT", 0.1)
    monkeypatch.setattr(complaint_module, "file_complaint", slow)
    events, messages = submit("confirm_submit", domain)  # asyncio.run waits for the worker thread
    assert said(messages) == [("utter_submit_uncertain", {})]  # it may have landed: never "not filed"
    assert events == [SlotSet("submit_failed", True)]
    assert db.count(tickets) == 1  # it landed late

    monkeypatch.setattr(complaint_module, "file_complaint", real)
    events, messages = submit(after(tracker_state("confirm_submit"), events), domain)
    assert said(messages) == [("utter_complaint_replay", {"number": TICKET})]
    assert events == filed_events(TICKET)
    assert (db.count(tickets), db.count(ticket_reports)) == (1, 1)


def test_a_cancelled_form_files_nothing(db: Store, domain: dict) -> None:
    state = tracker_state("confirm_submit")
    state["slots"].update(confirm=False, category="cancelled")  # what ComplaintForm.cancel() leaves
    events, messages = submit(state, domain)
    assert said(messages) == [("utter_complaint_cancelled", {})]
    assert events == RESET_EVENTS + [SlotSet("submit_failed", False)]
    assert db.count(tickets) == 0


# --- the phone number: masked in the tracker, held server-side, in the ticket once ---------

PHONE, MASKED_PHONE = "13912345678", "139****5678"
WITH_CONTACT = f"{ACTIVATION_TEXT}，我的电话{PHONE}，身份证110101199003071234"


def held_phones(store: Store) -> list[tuple]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(pending_phones.c.sender_id, pending_phones.c.phone))]


def as_stored(state: dict[str, Any]) -> dict[str, Any]:
    """The tracker as the next turn reads it back from a tracker store (every event masked)."""
    new = copy.deepcopy(state)
    new["events"] = [masked_event(e) for e in new["events"]]
    new["slots"] = {k: masked_event({"event": "slot", "name": k, "value": v})["value"] for k, v in new["slots"].items()}
    new["latest_message"] = masked_event({"event": "user", **new["latest_message"]})
    return new


def form_turn_with_contact() -> dict[str, Any]:
    state = tracker_state("form_activation_dog")
    for msg in (state["latest_message"], state["events"][3]):  # the entities' offsets stay right
        msg["text"] = WITH_CONTACT
    return state


def test_the_phone_slot_is_masked_and_the_number_held_then_filed_once(
    db: Store, domain: dict, clock: Clock, fixed_draft_id: str
) -> None:
    events, messages = run(ValidateComplaintForm(), Tracker.from_dict(form_turn_with_contact()), domain)

    assert events == [
        SlotSet("draft_id", fixed_draft_id),
        SlotSet("confirm", None),
        SlotSet("category_offered", None),
        SlotSet("category", "dog"),
        SlotSet("pending_description", None),
        SlotSet("location_mentions", MENTIONS_A),
        SlotSet("location", LOCATION_LABEL),
        SlotSet("location_status", "resolved"),
        SlotSet("location_candidates", None),
        SlotSet("district_code", "150102"),
        SlotSet("street_code", "150102001"),
        SlotSet("community_code", "150102001001"),
        SlotSet("description", ACTIVATION_TEXT),  # the phone and ID clauses are not the complaint
        SlotSet("phone", MASKED_PHONE),
        SlotSet("requested_slot", "photo"),
    ]
    assert messages == []
    assert held_phones(db) == [(RESIDENT_A, PHONE)]

    # later turns (photo, 保密, 确认): the tracker comes back from the store, masked; the
    # summary shows the masked number as before
    state = tracker_state("confirm_submit")
    state["slots"]["phone"] = events[-2]["value"]
    state = as_stored(state)
    assert PHONE not in json.dumps(state) and "13812345678" not in json.dumps(state)
    _, messages = run(ActionAskConfirm(), Tracker.from_dict(state), domain)
    assert said(messages)[0][1]["phone"] == MASKED_PHONE

    events, messages = submit(state, domain)

    assert said(messages)[0][0] == "utter_complaint_filed"
    assert events == filed_events(TICKET)
    [report] = db.rows(ticket_reports)
    assert (report["sender_id"], report["phone"], report["confidential"]) == (RESIDENT_A, PHONE, True)
    assert held_phones(db) == []  # in the ticket now, and only there

    # a retry of the same form run (as after a time-out) returns the same ticket, phone unchanged
    events, messages = submit(state, domain)
    assert said(messages) == [("utter_complaint_replay", {"number": TICKET})]
    assert [r["phone"] for r in db.rows(ticket_reports)] == [PHONE]


def test_a_later_phone_answer_replaces_the_held_number(db: Store, domain: dict) -> None:
    with db.engine.begin() as conn:
        keep_phone(conn, RESIDENT_A, "13800000000", RECORDED_AT)
    state = tracker_state("form_activation_dog")
    state["slots"]["requested_slot"] = "phone"
    state["latest_message"].update(text=f"打{PHONE}", intent={"name": "inform", "confidence": 0.9}, entities=[])
    events, messages = run(ValidateComplaintForm(), Tracker.from_dict(state), domain)
    assert events[0] == SlotSet("phone", MASKED_PHONE)
    assert held_phones(db) == [(RESIDENT_A, PHONE)]


def test_a_cancelled_form_forgets_the_held_phone(db: Store, domain: dict) -> None:
    with db.engine.begin() as conn:
        keep_phone(conn, RESIDENT_A, PHONE, RECORDED_AT)
        keep_phone(conn, RESIDENT_C, "13800000000", RECORDED_AT)
    state = tracker_state("confirm_submit")
    state["slots"].update(confirm=False, category="cancelled", phone=MASKED_PHONE)
    events, messages = submit(state, domain)
    assert said(messages) == [("utter_complaint_cancelled", {})]
    assert held_phones(db) == [(RESIDENT_C, "13800000000")]  # another conversation's stays


def test_a_masked_phone_without_a_held_number_files_without_one(db: Store, domain: dict, clock: Clock) -> None:
    state = tracker_state("confirm_submit")
    state["slots"]["phone"] = MASKED_PHONE  # the held row expired (retention) before the resident confirmed
    events, _ = submit(state, domain)
    assert events == filed_events(TICKET)
    assert [r["phone"] for r in db.rows(ticket_reports)] == [None]


def test_a_phone_held_past_its_expiry_is_not_filed(db: Store, domain: dict, clock: Clock) -> None:
    """48 h after it was given the held number is expired, even before the retention job's
    next run deletes its row: the ticket is filed without it."""
    with db.engine.begin() as conn:
        keep_phone(conn, RESIDENT_A, PHONE, RECORDED_AT - timedelta(hours=48))
    state = tracker_state("confirm_submit")
    state["slots"]["phone"] = MASKED_PHONE
    events, _ = submit(state, domain)
    assert events == filed_events(TICKET)
    assert [r["phone"] for r in db.rows(ticket_reports)] == [None]
    assert held_phones(db) == []  # the filing forgets the row too


def test_a_phone_held_just_under_its_expiry_is_filed(db: Store, domain: dict, clock: Clock) -> None:
    with db.engine.begin() as conn:
        keep_phone(conn, RESIDENT_A, PHONE, RECORDED_AT - timedelta(hours=47, minutes=59))
    state = tracker_state("confirm_submit")
    state["slots"]["phone"] = MASKED_PHONE
    submit(state, domain)
    assert [r["phone"] for r in db.rows(ticket_reports)] == [PHONE]


# --- status ------------------------------------------------------------------------


RECORDED_STATUS = {
    "number": TICKET,
    "category_name": CATEGORIES["dog"],
    "state": "派单",
    "lead": "市公安局养犬管理",
    "created": "2026-11-25 06:29",
    # what a resident needs: when the problem is due to be handled (办结, 5 working
    # days), and, while nobody has signed for it yet, when that is due (签收, 1)
    "deadline": "2026-12-02 06:29",
    "sign_line": "\n待承办单位签收，签收时限：2026-11-26 06:29",
    "last_event": "派单（2026-11-25 06:29）",
}


def test_status_of_own_ticket_by_number(db: Store, domain: dict, clock: Clock) -> None:
    submit("confirm_submit", domain)
    state = tracker_state("ask_status_own_number")
    assert (state["sender_id"], state["latest_message"]["intent"]["name"]) == (RESIDENT_A, "ask_status")

    events, messages = run(ActionTicketStatus(), Tracker.from_dict(state), domain)

    assert events == []
    assert said(messages) == [("utter_status_one", RECORDED_STATUS)]


def test_another_resident_asking_the_same_number_learns_nothing(db: Store, domain: dict, clock: Clock) -> None:
    submit("confirm_submit", domain)
    state = tracker_state("ask_status_other_sender_number")
    assert state["sender_id"] == RESIDENT_E and TICKET in state["latest_message"]["text"]

    events, messages = run(ActionTicketStatus(), Tracker.from_dict(state), domain)

    assert events == []
    assert said(messages) == [("utter_status_not_found", {"number": TICKET})]  # same as an unknown number


# The recorded filing's phone (confirm_submit.json: slot phone 13812345678, 保密).
PHONE_DIGITS = "5678"


@pytest.fixture
def fresh_guesses(monkeypatch: pytest.MonkeyPatch) -> GuessThrottle:
    """A throttle of this test's own (the action server's one counts for the whole process)."""
    throttle = GuessThrottle(limit=3, ticket_limit=5)
    monkeypatch.setattr(status_module, "guesses", lambda: throttle)
    return throttle


def asked(text: str, sender: str = RESIDENT_E) -> Tracker:
    """The recorded question of a resident who filed nothing, worded as `text` (the action
    reads the number and the digits from the text, whatever the intent's entities)."""
    state = tracker_state("ask_status_other_sender_number")
    state["sender_id"] = sender
    state["latest_message"]["text"] = text
    return Tracker.from_dict(state)


@pytest.mark.parametrize("text", [f"{TICKET} 尾号{PHONE_DIGITS}", f"查询{TICKET} 手机后四位{PHONE_DIGITS}",
                                  f"ｑｃ２６１１２５－０００１，电话后4位是：{PHONE_DIGITS}"])
def test_status_by_number_and_the_last_four_phone_digits_from_any_sender(
    db: Store, domain: dict, clock: Clock, fresh_guesses: GuessThrottle, text: str
) -> None:
    submit("confirm_submit", domain)

    events, messages = run(ActionTicketStatus(), asked(text), domain)

    assert events == []
    assert said(messages) == [("utter_status_one", RECORDED_STATUS)]


@pytest.mark.parametrize("text", [f"{TICKET} 尾号1234", f"{TICKET} 尾号{PHONE_DIGITS}1", f"{TICKET} {PHONE_DIGITS}",
                                  f"QC-261125-0002 尾号{PHONE_DIGITS}"])
def test_wrong_or_missing_digits_get_the_unknown_number_reply(
    db: Store, domain: dict, clock: Clock, fresh_guesses: GuessThrottle, text: str
) -> None:
    submit("confirm_submit", domain)

    events, messages = run(ActionTicketStatus(), asked(text), domain)

    number = TICKET if "0001" in text else "QC-261125-0002"
    assert (events, said(messages)) == ([], [("utter_status_not_found", {"number": number})])


def test_repeated_wrong_digits_are_throttled_per_sender(
    db: Store, domain: dict, clock: Clock, fresh_guesses: GuessThrottle
) -> None:
    submit("confirm_submit", domain)
    not_found = [("utter_status_not_found", {"number": TICKET})]
    for digits in ("0000", "1111", "2222"):  # the sender's limit is 3
        assert said(run(ActionTicketStatus(), asked(f"{TICKET} 尾号{digits}"), domain)[1]) == not_found

    # now even the right digits get the same reply: the guesser learns nothing
    events, messages = run(ActionTicketStatus(), asked(f"{TICKET} 尾号{PHONE_DIGITS}"), domain)
    assert (events, said(messages)) == ([], not_found)
    # another sender is not held up by this one's guesses
    other = run(ActionTicketStatus(), asked(f"{TICKET} 尾号{PHONE_DIGITS}", sender="resident-4d2b17"), domain)[1]
    assert [k for k, _ in said(other)] == ["utter_status_one"]
    # the resident who filed still sees it by number alone
    own = run(ActionTicketStatus(), tracker("ask_status_own_number"), domain)[1]
    assert [k for k, _ in said(own)] == ["utter_status_one"]


def test_wrong_digits_from_many_senders_are_throttled_per_ticket(
    db: Store, domain: dict, clock: Clock, fresh_guesses: GuessThrottle
) -> None:
    submit("confirm_submit", domain)
    for n in range(5):  # the ticket's limit is 5: fresh sender ids do not buy more guesses
        run(ActionTicketStatus(), asked(f"{TICKET} 尾号{n:04d}", sender=f"rest:guesser-{n}"), domain)
    events, messages = run(ActionTicketStatus(), asked(f"{TICKET} 尾号{PHONE_DIGITS}", sender="rest:guesser-9"), domain)
    assert (events, said(messages)) == ([], [("utter_status_not_found", {"number": TICKET})])
    # the resident who filed it is not locked out by them, digits or not
    own = tracker_state("ask_status_own_number")
    own["latest_message"]["text"] = f"{TICKET} 尾号{PHONE_DIGITS}"
    events, messages = run(ActionTicketStatus(), Tracker.from_dict(own), domain)
    assert (events, said(messages)) == ([], [("utter_status_one", RECORDED_STATUS)])
    # and its answer does not count as a wrong guess: a later guess by digits is still refused
    assert said(run(ActionTicketStatus(), asked(f"{TICKET} 尾号{PHONE_DIGITS}", sender="rest:guesser-10"),
                    domain)[1]) == [("utter_status_not_found", {"number": TICKET})]


def test_a_phone_callers_ticket_by_number_and_digits_on_a_chat_channel(
    db: Store, domain: dict, fresh_guesses: GuessThrottle
) -> None:
    """来电登记 filed it (channel phone, no conversation); the caller asks in the chat."""
    from bot.console.services import Principal, intake

    call = intake.read_call({"form_token": "t" * 43, "description": "楼下有人遛狗不牵绳", "place": "公主府社区3号楼",
                             "phone": "0471-6925678", "category": "dog", "street": "150102001"})
    operator = Principal(1, "disp", "派单员", "dispatcher", frozenset({"dispatch_center"}))
    filed = intake.file_call(ConsoleUnitOfWork(db.engine), operator, call, RECORDED_AT)
    assert (filed.number, db.rows(ticket_reports)[0]["channel"]) == (TICKET, "phone")

    events, messages = run(ActionTicketStatus(), asked(f"{TICKET} 尾号{PHONE_DIGITS}"), domain)
    assert events == []
    assert said(messages) == [("utter_status_one", RECORDED_STATUS)]  # the same ticket as the chat's filing
    wrong = run(ActionTicketStatus(), asked(f"{TICKET} 尾号5679"), domain)[1]
    assert said(wrong) == [("utter_status_not_found", {"number": TICKET})]


def test_status_without_a_number_and_without_tickets(db: Store, domain: dict, clock: Clock) -> None:
    submit("confirm_submit", domain)  # someone else's ticket exists
    events, messages = run(ActionTicketStatus(), tracker("ask_status_no_number"), domain)
    assert events == []
    assert said(messages) == [("utter_status_none", {})]


def test_status_without_a_number_lists_own_tickets(db: Store, domain: dict, clock: Clock) -> None:
    submit("confirm_submit", domain)
    state = tracker_state("ask_status_no_number")
    state["sender_id"] = RESIDENT_A  # the same question from the resident who filed
    events, messages = run(ActionTicketStatus(), Tracker.from_dict(state), domain)
    assert events == []
    assert [(k, v["number"]) for k, v in said(messages)] == [("utter_status_one", TICKET)]


def test_status_when_the_store_is_down(domain: dict, tmp_path: Path) -> None:
    broken = make_engine(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'qc.db'}")  # cannot be opened
    runtime.reset_engine(broken)
    try:
        events, messages = run(ActionTicketStatus(), tracker("ask_status_own_number"), domain)
    finally:
        broken.dispose()
    assert (events, said(messages)) == ([], [("utter_status_unavailable", {})])


# --- unsure / unreadable input, questions ---------------------------------------------


def test_unsure_category_offers_the_two_likeliest(domain: dict) -> None:
    state = tracker_state("nlu_fallback_two_categories")
    msg = state["latest_message"]
    ranking = [r["name"] for r in msg["intent_ranking"] if r["name"] != "nlu_fallback"]
    top1, top2 = ranking[:2]
    assert (msg["intent"]["name"], top1, top2) == ("nlu_fallback", "noise", "property")

    events, messages = run(ActionClarify(), Tracker.from_dict(state), domain)

    assert said(messages) == [("utter_clarify_category", {})]
    assert payloads(messages[0]) == [f"/{top1}", f"/{top2}", "/other"]
    assert events == [
        SlotSet("pending_description", "公主府社区楼下那个东西又坏了"),  # kept as the description
        SlotSet("location_mentions", [{"text": "公主府社区", "level": "community", "value": "公主府社区", "start": 0, "end": 5}]),
        SlotSet("category_offered", True),  # a typed answer to the buttons continues this complaint
    ]


def test_other_is_offered_once_when_it_is_among_the_likeliest(domain: dict) -> None:
    # the outside tester saw two "other" buttons side by side
    state = tracker_state("nlu_fallback_two_categories")
    state["latest_message"]["intent_ranking"] = [
        {"name": "nlu_fallback", "confidence": 0.3},
        {"name": "other", "confidence": 0.28},
        {"name": "noise", "confidence": 0.2},
        {"name": "property", "confidence": 0.15},
    ]
    events, messages = run(ActionClarify(), Tracker.from_dict(state), domain)
    assert payloads(messages[0]) == ["/noise", "/property", "/other"]


def test_unsure_without_a_likely_category_asks_plainly(domain: dict) -> None:
    state = tracker_state("nlu_fallback_two_categories")
    state["latest_message"]["intent_ranking"] = [
        {"name": "nlu_fallback", "confidence": 0.3},
        {"name": "inform", "confidence": 0.2},
        {"name": "noise", "confidence": 0.15},
    ]
    events, messages = run(ActionClarify(), Tracker.from_dict(state), domain)
    assert (events, said(messages)) == ([], [("utter_clarify", {})])


@pytest.mark.parametrize(
    ("name", "text", "response"),
    [
        ("nlu_fallback_empty", None, "utter_input_empty"),  # recorded: REST message "" arrived as "\u200b"
        ("nlu_fallback_empty", "", "utter_input_empty"),
        ("nlu_fallback_empty", "  \n ", "utter_input_empty"),
        ("nlu_fallback_emoji", None, "utter_input_no_text"),  # recorded: "😀😀"
        ("nlu_fallback_emoji", "👍", "utter_input_no_text"),
    ],
)
def test_unreadable_input_gets_a_specific_request(domain: dict, name: str, text: str | None, response: str) -> None:
    state = tracker_state(name)
    if text is not None:
        state["latest_message"]["text"] = text
    events, messages = run(ActionClarify(), Tracker.from_dict(state), domain)
    assert (events, said(messages)) == ([], [(response, {})])


def test_mongolian_script_waits_for_a_person_who_reads_it(domain: dict, db: Store, monkeypatch) -> None:
    """Not guessed at: a hand-off for an agent marked as speaking Mongolian, and the resident is
    told so in Mongolian and Chinese (bot/domain/handoff.py)."""
    from bot.domain.handoff import MONGOLIAN_LINE
    from bot.storage.handoff import handoffs

    monkeypatch.setenv("QC_HANDOFF_HOURS", "00:00-23:59")
    state = tracker_state("nlu_fallback_emoji")
    state["latest_message"]["text"] = "ᠰᠠᠢᠨ ᠪᠠᠢᠨ᠎ᠠ ᠤᠤ"
    events, messages = run(ActionClarify(), Tracker.from_dict(state), domain)
    [(key, variables)] = said(messages)
    assert (events, key) == ([], "utter_handoff_notice")
    assert variables["notice"].startswith(MONGOLIAN_LINE + "\n正在为您转接人工客服")
    with db.engine.connect() as conn:
        rows = conn.execute(select(handoffs.c.sender_id, handoffs.c.reason, handoffs.c.language, handoffs.c.state)).all()
    assert [tuple(r) for r in rows] == [(state["sender_id"], "mongolian", "mn", "waiting")]
    # the message nobody here could read is the one the person must see (the outside tester: lost)
    from bot.storage.handoff import handoff_messages
    with db.engine.connect() as conn:
        kept = conn.execute(select(handoff_messages.c.author, handoff_messages.c.outgoing,
                                   handoff_messages.c.text)).all()
    assert [tuple(r) for r in kept] == [("resident", False, "ᠰᠠᠢᠨ ᠪᠠᠢᠨ᠎ᠠ ᠤᠤ")]


def test_consult_answers_from_the_knowledge_base(domain: dict) -> None:
    state = tracker_state("consult_dog_licence")
    assert state["latest_message"]["text"] == "狗证在哪办"
    events, messages = run(ActionConsult(), Tracker.from_dict(state), domain)
    assert events == []
    [(key, variables)] = said(messages)
    assert key == "utter_consult_answer"
    assert variables["topic"] == "dog_registration"
    assert variables["answer"].strip()


def test_a_question_the_knowledge_base_cannot_answer_is_kept_for_the_agents(domain: dict, db: Store) -> None:
    """The fallback promises 留下问题由工作人员答复: the question becomes a 咨询 item (a hand-off
    left, reason question) with the resident's words, and the resident is told it was kept."""
    from bot.domain.handoff import QUESTION_NOTICE
    from bot.reference.knowledge import default_knowledge
    from bot.storage.handoff import handoff_events, handoff_messages, handoffs

    state = tracker_state("consult_dog_licence")
    state["latest_message"]["text"] = "公积金贷款利率是多少"
    events, messages = run(ActionConsult(), Tracker.from_dict(state), domain)
    assert (events, said(messages)) == ([], [("utter_consult_answer", {
        "answer": f"{default_knowledge().fallback}\n{QUESTION_NOTICE}", "topic": None})])
    with db.engine.connect() as conn:
        rows = conn.execute(select(handoffs.c.sender_id, handoffs.c.reason, handoffs.c.state, handoffs.c.channel)).all()
        steps = conn.execute(select(handoff_events.c.kind, handoff_events.c.actor, handoff_events.c.note)).all()
        kept = conn.execute(select(handoff_messages.c.author, handoff_messages.c.outgoing, handoff_messages.c.text)).all()
    assert [tuple(r) for r in rows] == [(state["sender_id"], "question", "left", "rest")]
    assert [tuple(r) for r in steps] == [("咨询", "system", "question")]
    assert [tuple(r) for r in kept] == [("resident", False, "公积金贷款利率是多少")]


# --- a photo before the complaint ------------------------------------------------------


def hand_tracker(text: str, intent: str, entities: list[dict], slots: dict[str, Any],
                 requested: str | None = None, metadata: dict | None = None) -> Tracker:
    latest = {"text": text, "intent": {"name": intent, "confidence": 0.95}, "entities": entities,
              "metadata": metadata or {}}
    all_slots = {name: None for name in yaml.safe_load((REPO / "domain.yml").read_text(encoding="utf-8"))["slots"]}
    all_slots.update(slots, requested_slot=requested)
    return Tracker("oPhotoFirst0001", all_slots, latest, [], False, None,
                   {"name": "complaint_form"} if requested else {}, "action_listen")


def test_a_photo_before_the_complaint_is_kept_and_filed_with_it(db: Store, domain: dict) -> None:
    ref = "/widget/photo/" + "c" * 32 + ".jpg"
    before = time.time()
    events, messages = run(ActionInformOutsideForm(), hand_tracker(
        f'/inform{{"photo": "{ref}"}}', "inform", [{"entity": "photo", "value": ref}], {}), domain)
    assert said(messages) == [("utter_photo_kept", {})]
    [kept] = events
    assert kept["name"] == "kept_photo" and kept["value"]["photo"] == ref
    assert before <= kept["value"]["at"] <= time.time()
    # a place or a detail without a photo: the usual question, nothing kept
    events, messages = run(ActionInformOutsideForm(), hand_tracker("公主府社区", "inform", [], {}), domain)
    assert (events, said(messages)) == ([], [("utter_ask_what_problem", {})])

    # the complaint: QR-code community from the WeChat metadata, the kept photo
    text = "单元门贴满小广告"
    start, _ = run(ValidateComplaintForm(), hand_tracker(
        text, "illegal_ads", [], {"kept_photo": kept["value"]},
        metadata={"wechat": {"scene_community": "150102001001"}}), domain)
    slots = {e["name"]: e["value"] for e in start}
    assert (slots["photo"], slots["community_code"], slots["prefilled"], slots["requested_slot"]) == \
        (ref, "150102001001", ["location", "photo"], "phone")
    slots.update(phone="none", confirm=True, kept_photo=kept["value"])
    slots.pop("requested_slot")
    events, messages = run(ActionSubmitComplaint(), hand_tracker("确认提交", "affirm", [], slots), domain)
    assert said(messages)[0][0] == "utter_complaint_filed"
    assert events[-1] == SlotSet("kept_photo", None)
    [report] = db.rows(ticket_reports)
    [ticket] = db.rows(tickets)
    assert (report["photo"], report["sender_id"], ticket["category"], ticket["street_code"],
            ticket["community_code"], ticket["description"]) == \
        (ref, "oPhotoFirst0001", "illegal_ads", "150102001", "150102001001", text)
