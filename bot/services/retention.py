"""Personal data kept no longer than needed: the retention job, run by the web server.

Each run (one at a time across web servers: a lease row in the ticket store, taken with
one conditional UPDATE, so SQLite and PostgreSQL alike) does three things and logs how
many of each, never what:
1. conversation transcripts (tracker events) are deleted when the conversation has been
   quiet for QC_RETENTION_NO_TICKET_DAYS (M) and either produced no ticket, or all its
   tickets closed (办结/回访) at least QC_RETENTION_TRANSCRIPT_DAYS (N) ago; never while
   one of its tickets is open;
2. tickets closed QC_RETENTION_TICKET_MONTHS (K, 30-day months) ago are anonymised:
   phones, photos (resident photos and after-photos, deleted from disk), sender ids
   (per-ticket pseudonyms) and the personal details of descriptions and addresses go;
   category, place codes, states, times and the event timeline (the 三率) stay;
3. review inbox rows written before masking existed are masked (new rows are masked
   when written: bot/retraining/inbox.py);
4. phone numbers a complaint form held for a ticket never filed are deleted
   PENDING_PHONE_HOURS (48) after they were given (bot/storage/pending_phones.py);
5. 转人工 (bot/storage/handoff.py): a hand-off handed back or closed N
   (QC_RETENTION_TRANSCRIPT_DAYS) days ago goes with its steps and messages, like a
   transcript (an open one never); the resident's words as typed (kept beside the masked
   text for the roles that may see phones) go PENDING_PHONE_HOURS after they were written.

Settings (environment, read when the web server starts):
  QC_RETENTION                  1 (default) runs the job; 0 turns it off
  QC_RETENTION_TRANSCRIPT_DAYS  N, default 90
  QC_RETENTION_NO_TICKET_DAYS   M, default 30
  QC_RETENTION_TICKET_MONTHS    K, default 12
  QC_RETENTION_INTERVAL_HOURS   how often a run is due, default 24
  QC_RETENTION_FIRST_DELAY      seconds after start-up before the first check, default 300
  QC_RETENTION_TRACKER_FILES    the embedded SQLite tracker files, default var/trackers-*.db
                                (the production profile's QC_TRACKER_DB_URL wins when set)
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy.engine import Engine

from bot.storage import pending_phones
from bot.storage import retention as store
from bot.storage.handoff import HandoffRepository
from bot.storage.transcripts import Transcripts, transcripts_from

log = logging.getLogger(__name__)

JOB = "retention"
BATCH = 200
LEASE_TTL = timedelta(minutes=30)  # renewed after every batch
MONTH = timedelta(days=30)


class SettingError(ValueError):
    """A QC_RETENTION_* variable that is not a positive number."""


def _positive(env: Mapping[str, str], name: str, default: float, kind: type = int) -> float:
    raw = (env.get(name) or "").strip()
    try:
        value = kind(raw) if raw else default
    except ValueError:
        raise SettingError(f"{name} must be a number, not {raw!r}") from None
    if value <= 0:
        raise SettingError(f"{name} must be positive")
    return value


@dataclass(frozen=True)
class RetentionSettings:
    enabled: bool = True
    transcript_days: int = 90  # N: after the conversation's last ticket closed
    no_ticket_days: int = 30  # M: after the last event (and the least quiet time before any delete)
    ticket_months: int = 12  # K: after a ticket closed, its personal fields go
    interval: timedelta = timedelta(hours=24)
    first_delay: float = 300.0
    tracker_url: str | None = None
    tracker_schema: str | None = None
    tracker_files: str | None = None  # a glob

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetentionSettings:
        env = os.environ if env is None else env
        from bot.paths import VAR_DIR

        first_delay = (env.get("QC_RETENTION_FIRST_DELAY") or "").strip()
        return cls(
            enabled=(env.get("QC_RETENTION") or "1").strip().lower() not in ("0", "false", "no", "off"),
            transcript_days=int(_positive(env, "QC_RETENTION_TRANSCRIPT_DAYS", 90)),
            no_ticket_days=int(_positive(env, "QC_RETENTION_NO_TICKET_DAYS", 30)),
            ticket_months=int(_positive(env, "QC_RETENTION_TICKET_MONTHS", 12)),
            interval=timedelta(hours=_positive(env, "QC_RETENTION_INTERVAL_HOURS", 24, float)),
            first_delay=float(first_delay) if first_delay else 300.0,
            tracker_url=(env.get("QC_TRACKER_DB_URL") or "").strip() or None,
            tracker_schema=(env.get("QC_TRACKER_DB_SCHEMA") or "").strip() or None,
            tracker_files=(env.get("QC_RETENTION_TRACKER_FILES") or "").strip()
            or str(VAR_DIR / "trackers-*.db"),
        )

    def transcripts(self) -> list[Transcripts]:
        return transcripts_from(self.tracker_url, self.tracker_schema, self.tracker_files)


@dataclass
class RunReport:
    ran: bool
    transcripts_deleted: int = 0  # conversations
    transcript_events_deleted: int = 0
    tickets_anonymised: int = 0
    reports_anonymised: int = 0
    phones_removed: int = 0
    photos_deleted: int = 0  # files removed from disk (resident photos and after-photos)
    outbox_deleted: int = 0
    review_items_masked: int = 0
    held_phones_deleted: int = 0  # phones of complaint forms never filed (bot/storage/pending_phones.py)
    handoffs_deleted: int = 0  # ended hand-offs (bot/storage/handoff.py)
    handoff_messages_deleted: int = 0
    handoff_typed_cleared: int = 0  # messages whose words as typed went (the masked text stays)
    stopped_early: bool = False  # the lease was lost (took longer than its TTL and was taken over)
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"transcripts deleted {self.transcripts_deleted} ({self.transcript_events_deleted} events), "
                f"tickets anonymised {self.tickets_anonymised} ({self.reports_anonymised} reports, "
                f"{self.phones_removed} phones, {self.photos_deleted} photo files, {self.outbox_deleted} notices), "
                f"review items masked {self.review_items_masked}, held phones deleted {self.held_phones_deleted}, "
                f"hand-offs deleted {self.handoffs_deleted} ({self.handoff_messages_deleted} messages, "
                f"{self.handoff_typed_cleared} typed cleared)")


class LeaseLost(Exception):
    pass


def mask_text(text: str | None, address: bool) -> str:
    """How anonymising masks a description (address=False) or an address (True)."""
    from bot.text import mask_personal_data

    return mask_personal_data(text or "", public=True, address=address)


def remove_files(upload_dir: Path, done: store.Anonymised) -> int:
    """After the commit, the photo files an anonymising left behind: how many were there."""
    from bot.uploads import remove_photo

    return sum(remove_photo(upload_dir, n) for n in done.photos + done.attachments)


def run_retention(engine: Engine, settings: RetentionSettings, transcripts: Sequence[Transcripts],
                  upload_dir: Path, now: datetime, holder: str | None = None,
                  clock: Callable[[], datetime] | None = None) -> RunReport:
    """One run at `now` (a clock the caller controls); `clock` is read to renew the lease
    between batches (default: `now` throughout). Skipped (ran=False) when another server
    holds the lease or the last run finished less than the interval ago."""
    holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    clock = clock or (lambda: now)
    with engine.begin() as conn:
        if not store.acquire_lease(conn, JOB, holder, now, LEASE_TTL, settings.interval):
            log.info("retention: not due or another server runs it")
            return RunReport(ran=False)
    report = RunReport(ran=True)
    finished = False

    def renew() -> None:
        with engine.begin() as conn:
            if not store.renew_lease(conn, JOB, holder, clock(), LEASE_TTL):
                raise LeaseLost()

    try:
        _anonymise_tickets(engine, settings, upload_dir, now, report, renew)
        _delete_transcripts(engine, settings, transcripts, now, report, renew)
        _mask_review_items(engine, report, renew)
        with engine.begin() as conn:
            report.held_phones_deleted = pending_phones.forget_phones_kept_before(
                conn, pending_phones.pending_phone_cutoff(now))
        _forget_handoffs(engine, settings, now, report, renew)
        finished = True
    except LeaseLost:
        report.stopped_early = True
        log.warning("retention: lease lost, run stopped early")
    finally:
        with engine.begin() as conn:
            store.release_lease(conn, JOB, holder, clock(), finished)
    log.info("retention run: %s", report.summary())
    return report


def _anonymise_tickets(engine: Engine, settings: RetentionSettings, upload_dir: Path, now: datetime,
                       report: RunReport, renew: Callable[[], None]) -> None:
    from bot.services.tickets import resident_of
    from bot.uploads import own_photo_name

    closed_before = now - settings.ticket_months * MONTH
    while True:
        with engine.begin() as conn:
            due = store.tickets_due_for_anonymising(conn, closed_before, BATCH)
        if not due:
            return
        for ticket_id in due:
            with engine.begin() as conn:
                done = store.anonymise_ticket(conn, ticket_id, now, mask_text, own_photo_name, resident_of)
            if done is None:
                continue
            # files after the commit: a failed transaction never leaves a ticket pointing nowhere
            report.photos_deleted += remove_files(upload_dir, done)
            report.tickets_anonymised += 1
            report.reports_anonymised += done.reports
            report.phones_removed += done.phones
            report.outbox_deleted += done.outbox
        renew()


def _delete_transcripts(engine: Engine, settings: RetentionSettings, transcripts: Sequence[Transcripts],
                        now: datetime, report: RunReport, renew: Callable[[], None]) -> None:
    quiet_cutoff = (now - timedelta(days=settings.no_ticket_days)).timestamp()
    closed_before = now - timedelta(days=settings.transcript_days)
    for source in transcripts:
        after = ""
        while True:
            page = source.quiet_since(quiet_cutoff, after, BATCH)
            if not page:
                break
            after = page[-1][0]
            with engine.connect() as conn:
                tickets = store.tickets_of_conversations(conn, [sender for sender, _ in page])
            for sender, _last in page:
                found = tickets.get(sender)
                if found is not None and (found.open or found.last_closed_at is None
                                          or found.last_closed_at > closed_before):
                    continue
                n = source.delete(sender, quiet_cutoff)
                if n:
                    report.transcripts_deleted += 1
                    report.transcript_events_deleted += n
            renew()


def _forget_handoffs(engine: Engine, settings: RetentionSettings, now: datetime, report: RunReport,
                     renew: Callable[[], None]) -> None:
    ended_before = now - timedelta(days=settings.transcript_days)
    while True:
        with engine.begin() as conn:
            repo = HandoffRepository(conn)
            due = repo.ended_before(ended_before, BATCH)
            report.handoff_messages_deleted += repo.delete(due)
        report.handoffs_deleted += len(due)
        if len(due) < BATCH:
            break
        renew()
    with engine.begin() as conn:
        report.handoff_typed_cleared = HandoffRepository(conn).forget_typed_before(
            pending_phones.pending_phone_cutoff(now))


def _mask_review_items(engine: Engine, report: RunReport, renew: Callable[[], None]) -> None:
    from bot.retraining.inbox import group_key
    from bot.text import mask_personal_data

    after = 0
    while True:
        with engine.connect() as conn:
            page = store.review_items_after(conn, after, BATCH * 5)
        if not page:
            return
        after = page[-1][0]
        changed = []
        for item_id, text, entities in page:
            masked = mask_personal_data(text)
            if masked != text:
                changed.append((item_id, masked, _entities_kept(text, masked, entities)))
        if changed:
            with engine.begin() as conn:
                for item_id, masked, kept in changed:
                    store.set_review_text(conn, item_id, masked, group_key(masked), kept)
            report.review_items_masked += len(changed)
        renew()


def _entities_kept(before: str, after: str, entities: list[dict]) -> list[dict]:
    """Accepted spans that still index the same characters (those before the first change
    when the length changed; all when the mask kept the length)."""
    if len(before) == len(after):
        return entities
    first = next((i for i, (a, b) in enumerate(zip(before, after)) if a != b), min(len(before), len(after)))
    return [e for e in entities if int(e.get("end", 0)) <= first]


# --- the scheduled job in the web server ------------------------------------------------------

class RetentionJob:
    """Checks every hour (or the interval, when shorter) whether a run is due; the lease
    makes one server do it. Runs in a worker thread; stopping waits for the run in flight."""

    def __init__(self, engine: Engine, settings: RetentionSettings, upload_dir: Path,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.engine = engine
        self.settings = settings
        self.upload_dir = upload_dir
        self.clock = clock
        self.runs: list[RunReport] = []
        self._stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    def start(self) -> asyncio.Task:
        self.task = asyncio.get_running_loop().create_task(self._loop(), name="qc-retention")
        return self.task

    async def _loop(self) -> None:
        check_every = min(self.settings.interval.total_seconds(), 3600.0)
        delay = self.settings.first_delay
        while not await self._sleep(delay):
            try:
                self.runs.append(await asyncio.shield(asyncio.ensure_future(asyncio.to_thread(self.run_once))))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged (no contents); the next check tries again
                log.exception("retention run failed")
            delay = check_every

    async def _sleep(self, seconds: float) -> bool:
        """True when asked to stop meanwhile."""
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=max(seconds, 0))
        except asyncio.TimeoutError:
            pass
        return self._stop.is_set()

    def run_once(self) -> RunReport:
        transcripts = self.settings.transcripts()
        try:
            return run_retention(self.engine, self.settings, transcripts, self.upload_dir, self.clock(),
                                 clock=self.clock)
        finally:
            for source in transcripts:
                source.close()

    async def stop(self) -> None:
        self._stop.set()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
