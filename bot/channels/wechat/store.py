"""What the WeChat channel keeps in the database, so it holds across workers and restarts.

  wechat_inbound    one row per received message (unique msg_key: MsgId, or sender +
                    CreateTime + event for events): WeChat's retries and concurrent
                    duplicates find the row and are never processed twice; the row also
                    says how the message was answered (and the passive reply, so a retry
                    gets the same answer) and feeds the per-sender rate limit; while
                    "processing" it is leased to one worker (lease_owner/lease_until,
                    renewed as it works), so a dead worker's message can be taken over;
                    an "async" row (answered "success", the answer still owed) keeps its
                    lease and the message itself (replay_body) until the answer is
                    delivered: a dead worker's async message is replayed by a sweep
                    (claim_async) on any instance, and the body is cleared once answered
  wechat_nonces     (timestamp, nonce) of every signed request seen in the last minutes,
                    with a hash of its body: a replayed signature with another body is refused
  wechat_residents  per openid: the last time the resident wrote (the 48-hour window for
                    customer-service messages), the buttons last offered (as numbers), the
                    community of the QR code they subscribed through
  wechat_tokens     the access_token, shared by all workers; a lease (compare-and-set on
                    lease_until) lets exactly one of them refresh it

All methods are synchronous (SQLAlchemy Core, short transactions); the channel calls them
in a worker thread through `InThread`: `await db(WeChatStore.finish, key, SENT)`, typed like
the method itself.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import (
    JSON,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from bot.storage.tables import UtcDateTime, metadata

# JSON whose Python None is SQL NULL (so "no buttons" can be tested with IS NULL)
NullableJson = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

wechat_inbound = Table(
    "wechat_inbound",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("msg_key", String(160), nullable=False, unique=True),
    Column("openid", String(64), nullable=False),
    Column("msg_type", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reply", Text),
    Column("received_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # status "processing" is a lease, renewed by the worker while it works: a worker that
    # died leaves it to expire, and WeChat's next retry (any instance) takes the message over
    Column("lease_owner", String(96)),
    Column("lease_until", UtcDateTime),
    Column("attempts", Integer, nullable=False, default=1),
    # status "async": the decrypted message (the fields the bot needs, see
    # gateway.REPLAY_FIELDS), kept only until its answer is delivered or given up on, so a
    # sweep can redo it when the worker died after answering "success"
    Column("replay_body", NullableJson),
    Index(None, "openid", "received_at"),
    Index(None, "received_at"),
)

wechat_nonces = Table(
    "wechat_nonces",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("timestamp", String(16), nullable=False),
    Column("nonce", String(64), nullable=False),
    Column("body_sha256", String(64), nullable=False),
    Column("seen_at", UtcDateTime, nullable=False),
    UniqueConstraint("timestamp", "nonce"),
    Index(None, "seen_at"),
)

wechat_residents = Table(
    "wechat_residents",
    metadata,
    Column("openid", String(64), primary_key=True),
    Column("last_inbound_at", UtcDateTime),
    Column("buttons", NullableJson),
    Column("scene_community", String(16)),
    Column("scene_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
)

wechat_tokens = Table(
    "wechat_tokens",
    metadata,
    Column("appid", String(64), primary_key=True),
    Column("access_token", Text),
    Column("expires_at", UtcDateTime),
    Column("lease_owner", String(64)),
    Column("lease_until", UtcDateTime),
    Column("refreshes", Integer, nullable=False, default=0),
    Column("updated_at", UtcDateTime, nullable=False),
)

TABLES = [wechat_inbound, wechat_nonces, wechat_residents, wechat_tokens]

# wechat_inbound.status
PROCESSING = "processing"
PASSIVE = "passive"  # answered in the HTTP response; `reply` holds the text
ASYNC = "async"  # answered "success"; the answer goes out through the customer-service API
SENT = "sent"  # the async answer was delivered
SEND_FAILED = "send_failed"
GAVE_UP = "gave_up"  # async, its worker died, and replaying it exceeded the attempts / age limit
LIMITED = "limited"  # over the per-sender rate limit: not processed
IGNORED = "ignored"  # nothing to answer (e.g. unsubscribe)
FAILED = "failed"  # the bot failed; the resident was asked to resend
FINAL = {PASSIVE, ASYNC, SENT, SEND_FAILED, GAVE_UP, LIMITED, IGNORED, FAILED}
LEASED = (PROCESSING, ASYNC)  # statuses whose lease a worker renews while it works

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
KEEP: Any = object()  # finish(): leave the resident's buttons as they are

# admit() outcomes
NEW, DUPLICATE, REPLAY, TAKEOVER = "new", "duplicate", "replay", "takeover"


@dataclass
class Admission:
    outcome: str  # NEW | DUPLICATE | REPLAY | TAKEOVER (a copy whose first worker's lease expired)
    row: dict[str, Any] | None = None  # DUPLICATE: the first copy's row
    recent: int = 0  # NEW: this sender's messages within the rate window, this one included


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


class WeChatStore:
    def __init__(self, engine: Engine, clock: Callable[[], float]):
        self.engine = engine
        self.clock = clock
        self._ready = False
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return utc(self.clock())

    # --- schema ---------------------------------------------------------------
    def ensure_tables(self) -> None:
        """Create the channel's tables if missing (init_db also does; this covers a
        server started without it). Two workers racing here is harmless."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            for attempt in range(3):
                try:
                    with self.engine.begin() as conn:
                        metadata.create_all(conn, tables=TABLES, checkfirst=True)
                    break
                except (IntegrityError, OperationalError, ProgrammingError):
                    if attempt == 2:
                        raise  # another worker created them meanwhile: the retry sees them
            self._ready = True

    # --- admission: replay check, dedupe, resident, rate count: ONE transaction ------
    def admit(self, timestamp: str, nonce: str, body_sha256: str, msg_key: str, openid: str, msg_type: str,
              rate_window: float, owner: str = "", lease_seconds: float = 10.0) -> Admission:
        """Everything a new request needs, in one short transaction (one commit). A new
        message is claimed for `owner` until now + lease_seconds (see renew)."""
        now = self.now()
        lease_until = now + timedelta(seconds=lease_seconds)
        with self.engine.begin() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(insert(wechat_nonces).values(
                        timestamp=timestamp, nonce=nonce, body_sha256=body_sha256, seen_at=now))
            except IntegrityError:
                seen = conn.execute(select(wechat_nonces.c.body_sha256).where(
                    wechat_nonces.c.timestamp == timestamp, wechat_nonces.c.nonce == nonce)).scalar()
                if seen != body_sha256:
                    return Admission(REPLAY)
            try:
                with conn.begin_nested():
                    conn.execute(insert(wechat_inbound).values(
                        msg_key=msg_key, openid=openid, msg_type=msg_type[:32], status=PROCESSING,
                        received_at=now, updated_at=now, lease_owner=owner or None, lease_until=lease_until,
                        attempts=1))
            except IntegrityError:
                # Still "processing" with an expired lease: its worker died (crash, restart).
                # Compare-and-set, so of several copies arriving now exactly one takes it over.
                taken = conn.execute(
                    update(wechat_inbound)
                    .where(wechat_inbound.c.msg_key == msg_key, wechat_inbound.c.status == PROCESSING,
                           (wechat_inbound.c.lease_until.is_(None)) | (wechat_inbound.c.lease_until < now))
                    .values(lease_owner=owner or None, lease_until=lease_until, updated_at=now,
                            attempts=wechat_inbound.c.attempts + 1)).rowcount
                if taken == 1:
                    self._upsert_resident_in(conn, openid, {"last_inbound_at": now}, now)
                    return Admission(TAKEOVER)
                row = conn.execute(select(wechat_inbound).where(wechat_inbound.c.msg_key == msg_key)).mappings().first()
                return Admission(DUPLICATE, dict(row) if row else {"msg_key": msg_key, "status": IGNORED})
            self._upsert_resident_in(conn, openid, {"last_inbound_at": now}, now)
            recent = conn.execute(
                select(func.count()).select_from(wechat_inbound).where(
                    wechat_inbound.c.openid == openid,
                    wechat_inbound.c.received_at > now - timedelta(seconds=rate_window))).scalar()
            return Admission(NEW, recent=int(recent or 0))

    # --- the message rows ---------------------------------------------------------
    def inbound(self, msg_key: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(wechat_inbound).where(wechat_inbound.c.msg_key == msg_key)).mappings().first()
            return dict(row) if row else None

    def renew(self, msg_key: str, owner: str, lease_seconds: float) -> bool:
        """Extend our claim on a message still being processed or whose async answer is
        still owed (False: not ours any more, or answered)."""
        now = self.now()
        with self.engine.begin() as conn:
            return conn.execute(
                update(wechat_inbound)
                .where(wechat_inbound.c.msg_key == msg_key, wechat_inbound.c.status.in_(LEASED),
                       wechat_inbound.c.lease_owner == owner)
                .values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)).rowcount == 1

    def defer(self, msg_key: str, owner: str, body: dict[str, Any], lease_seconds: float) -> bool:
        """processing → async: "success" was answered, the answer goes out later. Keeps the
        message (for a replay should this worker die before delivering) and our lease, in
        one commit; False when the row is not ours any more."""
        now = self.now()
        with self.engine.begin() as conn:
            return conn.execute(
                update(wechat_inbound)
                .where(wechat_inbound.c.msg_key == msg_key, wechat_inbound.c.status == PROCESSING,
                       wechat_inbound.c.lease_owner == owner)
                .values(status=ASYNC, replay_body=body, lease_until=now + timedelta(seconds=lease_seconds),
                        updated_at=now)).rowcount == 1

    def claim_async(self, owner: str, lease_seconds: float, max_attempts: int, max_age_seconds: float,
                    limit: int = 10) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The recovery sweep: (claimed, given up). Async rows whose lease expired (their
        worker died before delivering the answer) are claimed for `owner` by compare-and-set
        on the expired lease, so of several instances sweeping at once exactly one takes
        each; a row whose worker renews its lease is never taken, an answered row (any
        other status, body cleared) never. A row already tried `max_attempts` times in all
        (first try, takeovers, replays) or received more than `max_age_seconds` ago is
        given up instead: status gave_up, body cleared."""
        now = self.now()
        t = wechat_inbound.c
        expired = (t.lease_until.is_(None)) | (t.lease_until < now)
        orphan = [t.status == ASYNC, t.replay_body.isnot(None), expired]
        too_old = or_(t.attempts >= max_attempts, t.received_at < now - timedelta(seconds=max_age_seconds))
        claimed: list[dict[str, Any]] = []
        gave_up: list[dict[str, Any]] = []
        with self.engine.connect() as conn:
            candidates = [dict(r) for r in conn.execute(
                select(t.id, t.msg_key, t.openid, t.attempts, t.received_at).where(*orphan)
                .order_by(t.received_at).limit(limit)).mappings()]
        for cand in candidates:
            with self.engine.begin() as conn:
                if conn.execute(update(wechat_inbound).where(t.id == cand["id"], *orphan, too_old)
                                .values(status=GAVE_UP, replay_body=None, updated_at=now)).rowcount == 1:
                    gave_up.append(cand)
                    continue
                if conn.execute(update(wechat_inbound).where(t.id == cand["id"], *orphan)
                                .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds),
                                        attempts=t.attempts + 1, updated_at=now)).rowcount != 1:
                    continue  # another instance took it (or it was answered) meanwhile
                row = conn.execute(select(wechat_inbound).where(t.id == cand["id"])).mappings().one()
                claimed.append(dict(row))
        return claimed, gave_up

    def finish(self, msg_key: str, status: str, reply: str | None = None, openid: str | None = None,
               buttons: Any = KEEP) -> None:
        """The message's outcome (and, in the same commit, the buttons just offered)."""
        now = self.now()
        with self.engine.begin() as conn:
            # answered (or given up): the message is not kept any longer than needed
            values: dict[str, Any] = {"status": status, "updated_at": now, "replay_body": None}
            if reply is not None:
                values["reply"] = reply
            conn.execute(update(wechat_inbound).where(wechat_inbound.c.msg_key == msg_key).values(**values))
            if buttons is not KEEP and openid:
                self._buttons_in(conn, openid, buttons, now)

    # --- housekeeping -------------------------------------------------------------
    def prune(self, nonce_seconds: float, inbound_days: float, reply_hours: float) -> None:
        now = self.now()
        with self.engine.begin() as conn:
            conn.execute(delete(wechat_nonces).where(wechat_nonces.c.seen_at < now - timedelta(seconds=nonce_seconds)))
            conn.execute(delete(wechat_inbound).where(wechat_inbound.c.received_at < now - timedelta(days=inbound_days)))
            conn.execute(update(wechat_inbound).where(
                wechat_inbound.c.received_at < now - timedelta(hours=reply_hours),
                wechat_inbound.c.reply.isnot(None)).values(reply=None))

    # --- residents --------------------------------------------------------------
    @staticmethod
    def _upsert_resident_in(conn: Connection, openid: str, values: dict[str, Any], now: datetime) -> None:
        values = {**values, "updated_at": now}
        where = wechat_residents.c.openid == openid
        if conn.execute(update(wechat_residents).where(where).values(**values)).rowcount:
            return
        try:
            with conn.begin_nested():
                conn.execute(insert(wechat_residents).values(openid=openid, **values))
        except IntegrityError:  # inserted meanwhile by another request
            conn.execute(update(wechat_residents).where(where).values(**values))

    def _upsert_resident(self, openid: str, values: dict[str, Any]) -> None:
        now = self.now()
        with self.engine.begin() as conn:
            self._upsert_resident_in(conn, openid, values, now)

    def _buttons_in(self, conn: Connection, openid: str, buttons: list[dict[str, str]] | None,
                    now: datetime) -> None:
        where = wechat_residents.c.openid == openid
        if buttons:
            self._upsert_resident_in(conn, openid, {"buttons": buttons}, now)
        else:  # nothing offered now: forget old buttons (writes nothing when there were none)
            conn.execute(update(wechat_residents).where(where, wechat_residents.c.buttons.isnot(None))
                         .values(buttons=None, updated_at=now))

    def resident(self, openid: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(wechat_residents).where(wechat_residents.c.openid == openid)).mappings().first()
            return dict(row) if row else None

    def set_buttons(self, openid: str, buttons: list[dict[str, str]] | None) -> None:
        with self.engine.begin() as conn:
            self._buttons_in(conn, openid, buttons, self.now())

    def set_scene(self, openid: str, community_code: str) -> None:
        self._upsert_resident(openid, {"scene_community": community_code, "scene_at": self.now()})

    # --- access token -------------------------------------------------------------
    def token(self, appid: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(wechat_tokens).where(wechat_tokens.c.appid == appid)).mappings().first()
            return dict(row) if row else None

    def try_lease(self, appid: str, owner: str, lease_seconds: float, early_seconds: float) -> bool:
        """Take the right to refresh the token: only when it is missing or due, and only
        if nobody holds an unexpired lease (compare-and-set, one winner among workers)."""
        now = self.now()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(wechat_tokens).values(appid=appid, refreshes=0, updated_at=now))
        except IntegrityError:
            pass
        due = now + timedelta(seconds=early_seconds)
        with self.engine.begin() as conn:
            won = conn.execute(
                update(wechat_tokens)
                .where(wechat_tokens.c.appid == appid)
                .where((wechat_tokens.c.lease_until.is_(None)) | (wechat_tokens.c.lease_until < now))
                .where((wechat_tokens.c.access_token.is_(None)) | (wechat_tokens.c.expires_at.is_(None))
                       | (wechat_tokens.c.expires_at <= due))
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
            ).rowcount
        return won == 1

    def save_token(self, appid: str, owner: str, access_token: str, expires_at: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(wechat_tokens).where(wechat_tokens.c.appid == appid).values(
                access_token=access_token, expires_at=expires_at, lease_owner=None, lease_until=None,
                refreshes=wechat_tokens.c.refreshes + 1, updated_at=self.now()))

    def release_lease(self, appid: str, owner: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(wechat_tokens).where(
                wechat_tokens.c.appid == appid, wechat_tokens.c.lease_owner == owner).values(
                lease_owner=None, lease_until=None, updated_at=self.now()))

    def invalidate_token(self, appid: str, access_token: str) -> None:
        """WeChat said this token is invalid: mark it due, unless someone already replaced it."""
        with self.engine.begin() as conn:
            conn.execute(update(wechat_tokens).where(
                wechat_tokens.c.appid == appid, wechat_tokens.c.access_token == access_token).values(
                expires_at=EPOCH, updated_at=self.now()))


P = ParamSpec("P")
R = TypeVar("R")


async def to_thread(fn: Callable[..., R], *args: Any) -> R:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


class InThread:
    """The store for async code: `await db(WeChatStore.finish, key, SENT)` runs the method in
    a worker thread (tables ensured first), so the event loop never waits on the database."""

    def __init__(self, store: Callable[[], WeChatStore]) -> None:
        self.store = store  # created on first use: starting Rasa touches no database

    async def __call__(self, method: Callable[Concatenate[WeChatStore, P], R], *args: P.args,
                       **kwargs: P.kwargs) -> R:
        store = self.store()

        def call() -> R:
            store.ensure_tables()
            return method(store, *args, **kwargs)

        return await to_thread(call)


def forget_resident(conn: Connection, openid: str) -> int:
    """删除我的信息 (bot/services/rights.py, in the erasure's transaction): the answers kept for
    WeChat's retries (they quote the complaint, the summary, the export), the messages kept
    for a replay and the QR code's community go; the rows stay for the dedupe and the rate
    limit, the time of the last message for the 48-hour window. → answers cleared."""
    mine = wechat_inbound.c.openid == openid
    cleared = conn.execute(update(wechat_inbound).where(mine, or_(wechat_inbound.c.reply.isnot(None),
                                                                  wechat_inbound.c.replay_body.isnot(None)))
                           .values(reply=None, replay_body=None)).rowcount
    conn.execute(update(wechat_residents).where(wechat_residents.c.openid == openid,
                                                wechat_residents.c.scene_community.isnot(None))
                 .values(scene_community=None, scene_at=None))
    return cleared
