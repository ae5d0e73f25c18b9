"""Database schema (SQLAlchemy Core) and the DDL that create_all cannot express.

All DDL lives here until it moves to Alembic.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from bot.domain.model import QUEUE_KINDS


class UtcDateTime(TypeDecorator):
    """Timezone-aware UTC in, timezone-aware UTC out, on every backend.

    SQLite has no time zones: values are stored as naive UTC and tagged UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime refused: {value!r}")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


Json: Any = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

queues = Table(
    "queues",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    CheckConstraint(f"kind IN ({', '.join(repr(k) for k in QUEUE_KINDS)})", name="kind"),
)

routing_rules = Table(
    "routing_rules",
    metadata,
    Column("category", String(32), primary_key=True),
    Column("lead", String(64), nullable=False),
    Column("co", Json, nullable=False),
    Column("dispatch_class", String(16), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

tickets = Table(
    "tickets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("number", String(16), nullable=False, unique=True),
    Column("category", String(32), nullable=False),
    Column("description", Text, nullable=False),
    Column("location_text", Text, nullable=False),
    Column("district_code", String(12)),
    Column("street_code", String(12)),
    Column("community_code", String(12)),
    # No FK to queues: queues are synced from config and may arrive after tickets.
    Column("lead_queue", String(64), nullable=False),
    Column("co_queues", Json, nullable=False),
    Column("dispatch_class", String(16), nullable=False),
    Column("state", String(8), nullable=False),
    Column("report_count", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("deadline_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    # The 签收/办结 limits the ticket was filed under; NULL: the old single-limit rule.
    Column("time_limits", Json),
    Index(None, "lead_queue", "state"),
    Index(None, "category", "community_code", "created_at"),
)



class SearchWords(TypeDecorator):
    """A list of words (bot/storage/search.py): space-joined text on SQLite, which an FTS5
    table indexes; a text[] on PostgreSQL, under a GIN index."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(ARRAY(Text) if dialect.name == "postgresql" else Text())

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return list(value) if dialect.name == "postgresql" else " ".join(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> list[str] | None:
        if value is None:
            return None
        return list(value) if dialect.name == "postgresql" else str(value).split()


# A ticket's description as search words, kept in step by bot/storage/search.py.
ticket_search = Table(
    "ticket_search",
    metadata,
    Column("ticket_id", Integer, ForeignKey("tickets.id"), primary_key=True, autoincrement=False),
    Column("words", SearchWords, nullable=False),
    # PostgreSQL searches the words through this index; SQLite through its FTS5 table, so
    # there the index is empty (WHERE 0) rather than a second copy of every word.
    Index(None, "words", postgresql_using="gin", sqlite_where=text("0")),
)

ticket_reports = Table(
    "ticket_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ticket_id", Integer, ForeignKey("tickets.id"), nullable=False, index=True),
    Column("sender_id", String(255), nullable=False, index=True),
    Column("channel", String(32), nullable=False),
    Column("description", Text, nullable=False),
    Column("location_text", Text, nullable=False),
    Column("photo", Text),
    Column("phone", String(32)),
    Column("confidential", Boolean, nullable=False),
    Column("idempotency_key", String(255), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
)

ticket_events = Table(
    "ticket_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ticket_id", Integer, ForeignKey("tickets.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("from_state", String(8)),
    Column("to_state", String(8)),
    Column("actor", String(255), nullable=False),
    Column("reason", Text, nullable=False),
    Column("data", Json, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    UniqueConstraint("ticket_id", "seq"),
)

# The city's holiday schedule (bot/storage/holidays.py): one row per day that is a
# holiday (休) or a make-up working day (班) in a year the city entered.
holiday_days = Table(
    "holiday_days",
    metadata,
    Column("day", Date, primary_key=True),
    Column("year", Integer, nullable=False, index=True),
    Column("kind", String(2), nullable=False),
    Column("source", Text, nullable=False),
    Column("entered_by", String(255), nullable=False),
    Column("entered_at", UtcDateTime, nullable=False),
    CheckConstraint("kind IN ('休', '班')", name="kind"),
)

# Years the city entered (a year may be entered before anything else is known about it).
holiday_years = Table(
    "holiday_years",
    metadata,
    Column("year", Integer, primary_key=True),
    Column("entered_by", String(255), nullable=False),
    Column("entered_at", UtcDateTime, nullable=False),
)

ticket_counters = Table(
    "ticket_counters",
    metadata,
    Column("day", Date, primary_key=True),
    Column("last", Integer, nullable=False),
)

APPEND_ONLY_MESSAGE = "ticket_events is append-only"

# ticket_events is an audit trail: the database itself refuses edits.
# (No '%' in these strings: the PostgreSQL driver would treat it as a placeholder.)
TRIGGER_DDL: dict[str, tuple[str, ...]] = {
    "sqlite": (
        f"""CREATE TRIGGER IF NOT EXISTS ticket_events_no_update BEFORE UPDATE ON ticket_events
        BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END""",
        f"""CREATE TRIGGER IF NOT EXISTS ticket_events_no_delete BEFORE DELETE ON ticket_events
        BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END""",
    ),
    "postgresql": (
        f"""CREATE OR REPLACE FUNCTION ticket_events_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END $$""",
        "DROP TRIGGER IF EXISTS ticket_events_no_update_delete ON ticket_events",
        """CREATE TRIGGER ticket_events_no_update_delete BEFORE UPDATE OR DELETE ON ticket_events
        FOR EACH ROW EXECUTE FUNCTION ticket_events_append_only()""",
        "DROP TRIGGER IF EXISTS ticket_events_no_truncate ON ticket_events",
        """CREATE TRIGGER ticket_events_no_truncate BEFORE TRUNCATE ON ticket_events
        FOR EACH STATEMENT EXECUTE FUNCTION ticket_events_append_only()""",
    ),
}
