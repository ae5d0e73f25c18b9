"""Tables of the work console (工作台): accounts, sessions, the notification outbox,
after-photos, Open311 API keys and the event-feed cursor. Defined on the shared
`bot.storage.tables.metadata` (registered in bot.storage.all_tables)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

from bot.storage.tables import Json, UtcDateTime, metadata

ROLES = ("worker", "department", "dispatcher", "admin", "agent")  # agent: 坐席 (bot/domain/handoff.py)
OUTBOX_KINDS = ("resident", "worker")
OUTBOX_STATUSES = ("pending", "sent", "failed")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(repr(v) for v in values)


users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False),
    Column("password_hash", String(255), nullable=False),  # argon2id, PHC string
    Column("role", String(16), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", UtcDateTime, nullable=False),
    # Worker notices newer than this are "unread" (the badge).
    Column("notices_seen_at", UtcDateTime),
    # Languages a 坐席 answers in, comma-separated ("zh", "zh,mn"): which hand-offs reach them.
    Column("languages", String(32), nullable=False, default="zh", server_default="zh"),
    CheckConstraint(f"role IN ({_in(ROLES)})", name="role"),
)

user_queues = Table(
    "user_queues",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    # A department code (police_dog), street:<code>, or dispatch_center. No FK to queues:
    # queues are synced from configuration and may arrive later.
    Column("queue_code", String(64), primary_key=True),
)

sessions = Table(
    "sessions",
    metadata,
    # sha256 of the random cookie token: a database leak does not leak live sessions.
    Column("id", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # resident | worker
    Column("channel", String(32), nullable=False),  # rasa | console
    Column("recipient", String(255), nullable=False),  # sender id, or queue code
    Column("ticket_id", Integer, ForeignKey("tickets.id")),
    Column("event", String(32), nullable=False),  # accepted, resolved, reopened, new, returned, overdue, …
    Column("payload", Json, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("last_error", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime),
    CheckConstraint(f"kind IN ({_in(OUTBOX_KINDS)})", name="kind"),
    CheckConstraint(f"status IN ({_in(OUTBOX_STATUSES)})", name="status"),
    Index(None, "status", "next_attempt_at"),
    Index(None, "kind", "recipient", "created_at"),
)

attachments = Table(
    "attachments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ticket_id", Integer, ForeignKey("tickets.id"), nullable=False, index=True),
    # Random file name under var/uploads/ (outside the web root); served only through
    # a permission-checked handler.
    Column("stored_name", String(64), nullable=False, unique=True),
    Column("content_type", String(32), nullable=False),
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("uploaded_by", Integer, ForeignKey("users.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    # sha256 of a 32-byte random key (high entropy: a fast hash is enough, and lookups stay O(1)).
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", UtcDateTime, nullable=False),
    # what the key may read: 'public' (masked, like no key) or 'personal' (bot/web/open311.py)
    Column("scope", String(16), nullable=False, default="public", server_default="public"),
)

# Which ticket events the notifier has already turned into notices (one row per feed).
feed_cursors = Table(
    "feed_cursors",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("last_event_id", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# caller_export / caller_erasure: an admin's look-up / erasure of a phone caller's data (0015)
VIEW_FIELDS = ("phone", "description", "export", "caller_export", "caller_erasure")

# Who saw a resident's personal data (个人信息查看记录): a revealed phone number or unmasked
# description, or a CSV export. Append-only (triggers in migration 0011); the user's name and
# role are copied so the record stays true after an account changes.
personal_data_views = Table(
    "personal_data_views",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("username", String(64), nullable=False),
    Column("display_name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("ticket_id", Integer, ForeignKey("tickets.id"), index=True),  # NULL: an export
    Column("report_id", Integer),
    Column("field", String(16), nullable=False),
    Column("export_table", String(64)),
    Column("reason", Text),  # an export that includes 保密 tickets, a caller's data: why (required)
    Column("denied", Boolean, nullable=False, default=False, server_default=false()),  # a refused reveal
    Column("caller", String(32)),  # a phone caller's number, masked (caller_export, caller_erasure)
    CheckConstraint(f"field IN ({_in(VIEW_FIELDS)})", name="field"),
)

REPLY_ACTIONS = ("resolve", "return", "extend")

# 常用语: reply templates admins keep per action (办结, 退单, 延期) and category ('' = every
# category); the body may hold the placeholders of bot/console/services/replies.py.
reply_templates = Table(
    "reply_templates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("action", String(16), nullable=False),
    Column("category", String(32), nullable=False, default=""),
    Column("title", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("updated_by", String(64), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint(f"action IN ({_in(REPLY_ACTIONS)})", name="action"),
    # one title per action and category: a re-sent form cannot add the same template twice
    UniqueConstraint("action", "category", "title"),
)
