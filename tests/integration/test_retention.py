"""The retention job (bot/services/retention.py) on a clock the test controls, on SQLite and
PostgreSQL, with real tracker stores (bot/sqlite_trackerstore.py's file; Rasa's SQL store on
PostgreSQL): exact rows before and after, one run at a time across servers, and the job
started and stopped by the web app."""
from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from bot.console.tables import attachments, outbox, users
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.model import ACCEPT, FOLLOW_UP, RESOLVE, ComplaintDraft, Route
from bot.retraining.tables import review_items
from bot.services.retention import RetentionSettings, run_retention
from bot.services.tickets import file_complaint
from bot.storage.engine import init_db, make_engine
from bot.storage.pending_phones import pending_phones
from bot.storage.retention import acquire_lease, anonymised_tickets, job_leases
from bot.storage.tables import metadata, ticket_events, ticket_reports, tickets
from bot.storage.transcripts import SQLiteTranscripts, SQLTranscripts
from bot.uploads import record_owner
from tests.console.helpers import route

NOW = datetime(2027, 3, 1, 4, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
SETTINGS = RetentionSettings(transcript_days=90, no_ticket_days=30, ticket_months=12)
PHOTO = "a" * 32 + ".jpg"  # the resident's photo on the ticket to anonymise
AFTER = "b" * 32 + ".png"  # the worker's after-photo on it
OTHER_PHOTO = "c" * 32 + ".jpg"  # on a ticket closed too recently
PERSONAL = "我是王小明，电话13812345678，身份证110101199003071234，住金宇文苑3号楼2单元502室，楼下狗叫"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'tickets.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    eng = make_engine(url)
    import bot.storage.all_tables  # noqa: F401

    metadata.drop_all(eng)
    with eng.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    init_db(eng)
    yield eng
    eng.dispose()


# --- tracker stores with conversations at chosen times -------------------------------------

@pytest.fixture(scope="module")
def domain():
    from rasa.shared.core.domain import Domain

    return Domain.load(str(Path(__file__).resolve().parents[2] / "domain.yml"))


def _tracker(domain, sender: str, times: list[datetime]):
    from rasa.shared.core.events import ActionExecuted, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    events = []
    for t in times:
        events.append(UserUttered(f"我的电话是13812345678 ({sender})", {"name": "inform", "confidence": 1.0},
                                  timestamp=t.timestamp()))
        events.append(ActionExecuted("action_listen", timestamp=t.timestamp() + 1))
    return DialogueStateTracker.from_events(sender, events, domain.slots)


CONVERSATIONS = {
    # sender: times of its messages (each message is two events)
    "c-noticket-old": [NOW - 40 * DAY, NOW - 31 * DAY],  # no ticket, quiet > M: goes
    "c-noticket-recent": [NOW - 25 * DAY],  # no ticket, quiet < M: stays
    "c-closed-long": [NOW - 100 * DAY],  # its ticket closed 100 days ago (> N): goes
    "c-closed-recent": [NOW - 80 * DAY],  # closed 80 days ago (< N): stays
    "c-open": [NOW - 200 * DAY],  # its ticket is still open: stays
    "c-closed-chatting": [NOW - 100 * DAY, NOW - 10 * DAY],  # closed long ago but spoke 10 days ago: stays
    "c-anon": [NOW - 420 * DAY],  # its ticket is anonymised (so it has none left): goes
}
KEPT = ["c-closed-chatting", "c-closed-recent", "c-noticket-recent", "c-open"]


@pytest.fixture(params=["sqlite-trackers", "postgresql-trackers"])
def transcripts(request: pytest.FixtureRequest, tmp_path: Path, domain, monkeypatch: pytest.MonkeyPatch):
    if request.param == "sqlite-trackers":
        from bot.rasa_ext.sqlite_trackerstore import SQLiteTrackerStore

        path = str(tmp_path / "trackers-5005.db")
        store = SQLiteTrackerStore(domain, db=path)
        for sender, times in CONVERSATIONS.items():
            asyncio.run(store.save(_tracker(domain, sender, times)))
        store.close()
        source = SQLiteTranscripts(path)
        yield source
        source.close()
        return
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from bot.rasa_ext.trackerstore import ResilientSQLTrackerStore
    from tests.conftest import PG_BASE_URL, _skip_services

    if _skip_services():
        pytest.skip("QC_SKIP_SERVICES=1: PostgreSQL tests left out")
    schema = f"qc_tr_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_BASE_URL, future=True)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')  # a generated name
    try:
        u = make_url(PG_BASE_URL)
        monkeypatch.setenv("POSTGRESQL_SCHEMA", schema)  # what Rasa reads
        store = ResilientSQLTrackerStore(domain=domain, dialect="postgresql", host=u.host, port=u.port or 5432,
                                         db=u.database, username=u.username, password=u.password)

        async def save_all() -> None:
            for sender, times in CONVERSATIONS.items():
                await store.save(_tracker(domain, sender, times))

        asyncio.run(save_all())
        store.engine.dispose()
        source = SQLTranscripts(PG_BASE_URL, schema)
        yield source
        source.close()
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def senders(source) -> list[str]:
    return sorted(s for s, _ in source.quiet_since(NOW.timestamp() + 1e6, "", 1000))


# --- tickets at chosen times ---------------------------------------------------------------

def _file(engine: Engine, sender: str, at: datetime, *, description: str = "楼下有人遛狗不牵绳",
          location: str = "公主府社区3号楼", photo: str | None = None, phone: str | None = "13847112345",
          confidential: bool = False) -> int:
    draft = ComplaintDraft(sender_id=sender, channel="socketio", category="dog", description=description,
                           location_text=location, photo=photo, phone=phone, confidential=confidential,
                           idempotency_key=f"{sender}:draft-1")
    r = route()  # no community: no 并单 between these tickets
    r = Route(r.lead, r.co, r.district_code, r.street_code, None, r.dispatch_class, r.reason)
    return file_complaint(ConsoleUnitOfWork(engine), draft, r, at).ticket_id


def _close(engine: Engine, ticket_id: int, at: datetime, follow_up: bool = False) -> None:
    with ConsoleUnitOfWork(engine) as uow:
        ticket = uow.tickets.get(ticket_id)
        ticket.apply(ACCEPT, "user:grid", "", at - DAY)
        ticket.apply(RESOLVE, "user:grid", "已约谈犬主", at if not follow_up else at - DAY)
        if follow_up:
            ticket.apply(FOLLOW_UP, "resident:x", "居民回访：已解决，满意", at, solved=True, satisfaction="满意")
        uow.tickets.save_events(ticket)
        uow.commit()


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> dict:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    ids = {}
    ids["anon"] = _file(engine, "c-anon", NOW - 420 * DAY, description=PERSONAL, location="金宇文苑3号楼2单元502室",
                        photo=f"/widget/photo/{PHOTO}", confidential=True)
    _close(engine, ids["anon"], NOW - 370 * DAY, follow_up=True)  # 回访 370 days ago: > 12 × 30
    ids["closed_long"] = _file(engine, "c-closed-long", NOW - 110 * DAY, photo=f"/widget/photo/{OTHER_PHOTO}")
    _close(engine, ids["closed_long"], NOW - 100 * DAY)
    ids["closed_recent"] = _file(engine, "c-closed-recent", NOW - 90 * DAY)
    _close(engine, ids["closed_recent"], NOW - 80 * DAY)
    ids["open"] = _file(engine, "c-open", NOW - 200 * DAY)
    ids["chatting"] = _file(engine, "c-closed-chatting", NOW - 120 * DAY)
    _close(engine, ids["chatting"], NOW - 100 * DAY)
    for name, owner in ((PHOTO, "c-anon"), (OTHER_PHOTO, "c-closed-long")):
        (uploads / name).write_bytes(b"photo")
        record_owner(uploads, name, owner)
    (uploads / AFTER).write_bytes(b"after")
    with engine.begin() as conn:
        uid = conn.execute(insert(users).values(username="grid", display_name="网格员", password_hash="x",
                                                role="worker", active=True, created_at=NOW - 500 * DAY)).inserted_primary_key[0]
        conn.execute(insert(attachments).values(ticket_id=ids["anon"], stored_name=AFTER, content_type="image/png",
                                                size=5, sha256="0" * 64, uploaded_by=uid, created_at=NOW - 371 * DAY))
        conn.execute(insert(outbox).values(kind="resident", channel="rasa", recipient="c-anon", ticket_id=ids["anon"],
                                           event="resolved", payload={"number": "x"}, status="sent", attempts=1,
                                           next_attempt_at=NOW - 371 * DAY, created_at=NOW - 371 * DAY))
        conn.execute(insert(outbox).values(kind="worker", channel="console", recipient="street:150102001",
                                           ticket_id=ids["anon"], event="new", payload={}, status="sent", attempts=1,
                                           next_attempt_at=NOW - 420 * DAY, created_at=NOW - 420 * DAY))
        for sender, phone, age in (("c-form-old", "13900002222", 49), ("c-form-recent", "13900001111", 47)):
            conn.execute(insert(pending_phones).values(sender_id=sender, phone=phone, kept_at=NOW - age * HOUR))
        # review inbox rows from before masking existed, and one written masked
        for i, text in enumerate(["我的电话13912345678，狗叫", "身份证 110101 19900307 1234 丢了", "路灯不亮"]):
            conn.execute(insert(review_items).values(
                source="fallback", text=text, group_key=f"k{i}", correction={}, dedupe_key=f"fallback:s:{i}",
                status="new", entities=[{"start": 0, "end": 2, "entity": "x", "value": text[:2]}],
                created_at=NOW - 5 * DAY))
    return {"ids": ids, "uploads": uploads}


def _reports(engine: Engine) -> list:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(ticket_reports.c.ticket_id, ticket_reports.c.sender_id, ticket_reports.c.phone,
                   ticket_reports.c.photo, ticket_reports.c.description, ticket_reports.c.location_text,
                   ticket_reports.c.confidential, ticket_reports.c.idempotency_key)
            .order_by(ticket_reports.c.id))]


def _tickets(engine: Engine) -> list:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(tickets.c.id, tickets.c.category, tickets.c.state, tickets.c.street_code, tickets.c.description,
                   tickets.c.location_text, tickets.c.created_at).order_by(tickets.c.id))]


def test_a_run_deletes_and_anonymises_exactly_what_is_due(engine, transcripts, world, caplog):
    ids, uploads = world["ids"], world["uploads"]
    before_reports, before_tickets = _reports(engine), _tickets(engine)
    with engine.connect() as conn:
        events_before = conn.execute(select(ticket_events.c.ticket_id, ticket_events.c.kind, ticket_events.c.at)
                                     .order_by(ticket_events.c.id)).all()
    assert senders(transcripts) == sorted(CONVERSATIONS)
    assert before_reports[0] == (ids["anon"], "c-anon", "13847112345", f"/widget/photo/{PHOTO}", PERSONAL,
                                 "金宇文苑3号楼2单元502室", True, "c-anon:draft-1")

    with caplog.at_level(logging.INFO, logger="bot.services.retention"):
        report = run_retention(engine, SETTINGS, [transcripts], uploads, NOW, holder="web-1")

    assert report.ran and not report.stopped_early
    assert (report.tickets_anonymised, report.reports_anonymised, report.phones_removed, report.photos_deleted,
            report.outbox_deleted) == (1, 1, 1, 2, 1)
    assert (report.transcripts_deleted, report.transcript_events_deleted) == (3, 8)
    assert report.review_items_masked == 2
    assert report.held_phones_deleted == 1
    # transcripts: exactly the due conversations went
    assert senders(transcripts) == KEPT
    # the anonymised ticket: personal fields gone, the rest as it was
    masked = "我是***，电话138****5678，身份证110***********1234，住金宇文苑*号楼*单元*室，楼下狗叫"
    assert _reports(engine) == [
        (ids["anon"], f"anon:{ids['anon']}:1", None, None, masked, "金宇文苑*", True, "anon:1"),
        *before_reports[1:],
    ]
    after_tickets = _tickets(engine)
    assert after_tickets[0] == before_tickets[0][:4] + (masked, "金宇文苑*", before_tickets[0][6])
    assert after_tickets[1:] == before_tickets[1:]
    with engine.connect() as conn:
        assert conn.execute(select(ticket_events.c.ticket_id, ticket_events.c.kind, ticket_events.c.at)
                            .order_by(ticket_events.c.id)).all() == events_before  # the timeline, the 三率
        assert conn.execute(select(anonymised_tickets)).all() == [(ids["anon"], NOW)]
        assert conn.execute(select(outbox.c.kind, outbox.c.recipient)).all() == [("worker", "street:150102001")]
        assert conn.execute(select(attachments.c.stored_name)).scalars().all() == [AFTER]  # the record stays
        assert conn.execute(select(review_items.c.text, review_items.c.group_key, review_items.c.entities)
                            .order_by(review_items.c.id)).all() == [
            ("我的电话139****5678，狗叫", "我的电话1395678狗叫", [{"start": 0, "end": 2, "entity": "x", "value": "我的"}]),
            ("身份证 110***********1234 丢了", "身份证1101234丢了", [{"start": 0, "end": 2, "entity": "x", "value": "身份"}]),
            ("路灯不亮", "k2", [{"start": 0, "end": 2, "entity": "x", "value": "路灯"}]),
        ]
        # a form's held phone: kept 49 hours ago goes, 47 hours ago stays
        assert conn.execute(select(pending_phones)).all() == [("c-form-recent", "13900001111", NOW - 47 * HOUR)]
        lease = conn.execute(select(job_leases)).one()
    assert tuple(lease) == ("retention", None, None, NOW)
    # files: the anonymised ticket's photos (and the owner record) are gone, others stay
    assert sorted(p.name for p in uploads.iterdir()) == [OTHER_PHOTO]
    assert sorted(p.name for p in (uploads.parent / "uploads.owners").iterdir()) == [OTHER_PHOTO]
    # the log says how many, never what
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retention run")]
    assert line == ("retention run: transcripts deleted 3 (8 events), tickets anonymised 1 (1 reports, 1 phones, "
                    "2 photo files, 1 notices), review items masked 2, held phones deleted 1, "
                    "hand-offs deleted 0 (0 messages, 0 typed cleared)")

    # not due again before the interval; then due, and there is nothing left to do
    assert not run_retention(engine, SETTINGS, [transcripts], uploads, NOW + timedelta(hours=23), holder="web-2").ran
    again = run_retention(engine, SETTINGS, [transcripts], uploads, NOW + timedelta(hours=24), holder="web-2")
    # nothing left but the form's phone given 47 hours before the first run (71 hours now)
    assert again.ran and again.summary() == RunReportZero.replace("held phones deleted 0", "held phones deleted 1")
    assert senders(transcripts) == KEPT
    with engine.connect() as conn:
        assert conn.execute(select(pending_phones)).all() == []


RunReportZero = ("transcripts deleted 0 (0 events), tickets anonymised 0 (0 reports, 0 phones, 0 photo files, "
                 "0 notices), review items masked 0, held phones deleted 0, "
                 "hand-offs deleted 0 (0 messages, 0 typed cleared)")


def test_a_held_lease_stops_a_second_run_until_it_runs_out(engine, transcripts, world):
    before = (_reports(engine), senders(transcripts))
    with engine.begin() as conn:  # another web server runs it now (its lease: 30 minutes)
        assert acquire_lease(conn, "retention", "web-9", NOW, timedelta(minutes=30), SETTINGS.interval)
    assert not run_retention(engine, SETTINGS, [transcripts], world["uploads"], NOW + timedelta(minutes=29)).ran
    assert (_reports(engine), senders(transcripts)) == before
    # that server died: its lease runs out and the next check runs
    assert run_retention(engine, SETTINGS, [transcripts], world["uploads"], NOW + timedelta(minutes=31)).ran
    assert senders(transcripts) == KEPT


def test_two_servers_at_once_run_it_once(engine, transcripts, world):
    barrier = threading.Barrier(2)
    results = {}

    def server(name: str) -> None:
        barrier.wait()
        results[name] = run_retention(engine, SETTINGS, [transcripts], world["uploads"], NOW, holder=name)

    threads = [threading.Thread(target=server, args=(n,)) for n in ("web-1", "web-2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.ran for r in results.values()) == [False, True]
    [ran] = [r for r in results.values() if r.ran]
    assert (ran.tickets_anonymised, ran.transcripts_deleted) == (1, 3)
    with engine.connect() as conn:
        assert conn.execute(select(anonymised_tickets.c.ticket_id)).scalars().all() == [world["ids"]["anon"]]
    assert senders(transcripts) == KEPT


def test_settings_from_the_environment():
    s = RetentionSettings.from_env({"QC_RETENTION_TRANSCRIPT_DAYS": "60", "QC_RETENTION_NO_TICKET_DAYS": "7",
                                    "QC_RETENTION_TICKET_MONTHS": "6", "QC_RETENTION_INTERVAL_HOURS": "12",
                                    "QC_TRACKER_DB_URL": "postgresql://u@db/tr"})
    assert (s.enabled, s.transcript_days, s.no_ticket_days, s.ticket_months, s.interval, s.tracker_url) == \
        (True, 60, 7, 6, timedelta(hours=12), "postgresql://u@db/tr")
    d = RetentionSettings.from_env({})
    assert (d.transcript_days, d.no_ticket_days, d.ticket_months, d.interval, d.first_delay) == \
        (90, 30, 12, timedelta(hours=24), 300.0)
    assert d.tracker_files.endswith("var/trackers-*.db")
    assert not RetentionSettings.from_env({"QC_RETENTION": "0"}).enabled
    from bot.services.retention import SettingError

    for bad in ("0", "-3", "soon"):
        with pytest.raises(SettingError):
            RetentionSettings.from_env({"QC_RETENTION_TICKET_MONTHS": bad})


def test_the_web_app_starts_the_job_and_stops_it_on_cleanup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, domain):
    from aiohttp.test_utils import TestClient, TestServer

    from bot.console.config import ConsoleConfig
    from bot.console.http import CONSOLE_CONFIG, CONSOLE_ENGINE
    from bot.rasa_ext.sqlite_trackerstore import SQLiteTrackerStore
    from bot.web.app import init_app
    from bot.web.keys import Settings
    from bot.web.retention import RETENTION, RETENTION_SETTINGS

    url = f"sqlite:///{tmp_path / 'tickets.db'}"
    eng = make_engine(url)
    init_db(eng)
    trackers = tmp_path / "trackers-5005.db"
    store = SQLiteTrackerStore(domain, db=str(trackers))
    now = datetime.now(timezone.utc)
    asyncio.run(store.save(_tracker(domain, "c-old", [now - 40 * DAY])))
    asyncio.run(store.save(_tracker(domain, "c-new", [now - DAY])))
    store.close()
    monkeypatch.setenv("QC_UPLOAD_DIR", str(tmp_path / "uploads"))
    seen = {}

    async def go() -> None:
        app = init_app(Settings(database_url=url, rasa_url="http://127.0.0.1:9"))
        app[CONSOLE_ENGINE] = eng
        app[CONSOLE_CONFIG] = ConsoleConfig(notifier=False, upload_dir=tmp_path / "uploads")
        app[RETENTION_SETTINGS] = RetentionSettings(first_delay=0, tracker_files=str(tmp_path / "trackers-*.db"))
        async with TestClient(TestServer(app)) as client:
            assert (await client.get("/health")).status == 200
            job = app[RETENTION].job
            assert job is not None and not job.task.done()
            for _ in range(200):  # the first check runs at once (first_delay=0)
                if job.runs:
                    break
                await asyncio.sleep(0.05)
            seen["runs"] = [(r.ran, r.transcripts_deleted) for r in job.runs]
            seen["job"] = job
        seen["after"] = (seen["job"].task.done(), app[RETENTION].job)

    asyncio.run(go())
    assert seen["runs"] == [(True, 1)]
    assert seen["after"] == (True, None)  # stopped with the app
    source = SQLiteTranscripts(str(trackers))
    assert senders(source) == ["c-new"]
    source.close()
    with eng.connect() as conn:
        assert conn.execute(select(job_leases.c.holder, job_leases.c.expires_at)).one() == (None, None)
    eng.dispose()


def test_the_job_is_off_with_qc_retention_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from aiohttp.test_utils import TestClient, TestServer

    from bot.console.config import ConsoleConfig
    from bot.console.http import CONSOLE_CONFIG, CONSOLE_ENGINE
    from bot.web.app import init_app
    from bot.web.keys import Settings
    from bot.web.retention import RETENTION

    url = f"sqlite:///{tmp_path / 'tickets.db'}"
    eng = make_engine(url)
    init_db(eng)
    monkeypatch.setenv("QC_RETENTION", "0")

    async def go():
        app = init_app(Settings(database_url=url, rasa_url="http://127.0.0.1:9"))
        app[CONSOLE_ENGINE] = eng
        app[CONSOLE_CONFIG] = ConsoleConfig(notifier=False, upload_dir=tmp_path / "uploads")
        async with TestClient(TestServer(app)) as client:
            assert (await client.get("/health")).status == 200
            return app[RETENTION].job

    assert asyncio.run(go()) is None
    eng.dispose()
