"""Tables of the retraining loop: the review inbox, the model registry and the
training lock. Defined on the shared metadata (registered in bot.storage.all_tables)."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Float, ForeignKey, Index, Integer, String, Table, Text

from bot.storage.tables import Json, UtcDateTime, metadata

REVIEW_SOURCES = ("fallback", "unsure", "deny", "ticket_category", "ticket_location", "knowledge")
REVIEW_STATUSES = ("new", "accepted", "rejected")
MODEL_STATUSES = ("queued", "validating", "training", "evaluating", "candidate", "failed", "active", "retired")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(repr(v) for v in values)


review_items = Table(
    "review_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(16), nullable=False),
    # What the resident wrote, phone and ID numbers masked before it was stored.
    Column("text", Text, nullable=False),
    # Normalised text (case, width, spaces, punctuation folded): similar texts share it
    # and the inbox sorts by how many share it.
    Column("group_key", String(255), nullable=False),
    Column("predicted_intent", String(64)),
    Column("confidence", Float),
    Column("second_intent", String(64)),
    Column("second_confidence", Float),
    # The correction if someone made one: {"intent": ..., "street_code": ..., "lead": ...}
    Column("correction", Json, nullable=False),
    Column("ticket_id", Integer, ForeignKey("tickets.id")),
    # Retried actions or console requests must not add the same message twice.
    Column("dedupe_key", String(255), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("intent", String(64)),  # what the admin accepted
    Column("entities", Json, nullable=False),  # accepted spans [{start, end, entity, value}]
    Column("reviewed_by", String(64)),
    Column("reviewed_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint(f"source IN ({_in(REVIEW_SOURCES)})", name="source"),
    CheckConstraint(f"status IN ({_in(REVIEW_STATUSES)})", name="status"),
    Index(None, "status", "group_key"),
)

model_registry = Table(
    "model_registry",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress", Integer, nullable=False),  # 0–100, for the page's bar
    Column("data_hash", String(64)),  # sha256 of config + domain + training data
    Column("path", Text),  # the model archive
    Column("log_path", Text),
    Column("metrics", Json, nullable=False),  # candidate and baseline on the split + inbox examples
    Column("error", Text),
    Column("duration_s", Float),
    Column("finished_at", UtcDateTime),
    Column("activated_at", UtcDateTime),
    Column("activated_by", String(64)),
    CheckConstraint(f"status IN ({_in(MODEL_STATUSES)})", name="status"),
)

# One row while a training runs: the insert is the lock (works across processes and
# hosts that share the database); the runner deletes it when it ends.
training_lock = Table(
    "training_lock",
    metadata,
    Column("name", String(16), primary_key=True),
    Column("model_id", Integer, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
)
