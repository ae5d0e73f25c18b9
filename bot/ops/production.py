"""The production profile: one switch (QC_PROFILE=production) moves every store to the
engines a city runs — Rasa's tracker store on PostgreSQL, its lock store on Redis, its
conversation events to RabbitMQ (Pika broker), our ticket store on PostgreSQL (Alembic).

Nothing secret is written to disk: the generated endpoints file names environment
variables (`${QC_TRACKER_DB_PASSWORD}`, Rasa substitutes them when it reads the file) and
the passwords stay in the environment of the processes. Without QC_PROFILE=production the
embedded default (SQLite ticket store, in-memory tracker) is unchanged.

Environment (production):
  QC_DATABASE_URL        ticket store, e.g. postgresql://qc:…@db:5432/qingcheng
  QC_TRACKER_DB_URL      Rasa's tracker store (its own database), e.g. postgresql://qc:…@db:5432/qingcheng_tracker
  QC_TRACKER_DB_SCHEMA   optional schema for the tracker tables (must exist)
  QC_REDIS_URL           lock store, e.g. redis://:…@cache:6379/1
  QC_LOCK_PREFIX         optional alphanumeric key prefix (several deployments on one Redis)
  QC_AMQP_URL            RabbitMQ, e.g. amqp://qc:…@mq:5672/   (conversation + ticket events)
  QC_RASA_EVENTS_QUEUE   queue for Rasa's conversation events (default qc_rasa_events)
  QC_RASA_EXCHANGE       the fanout exchange Rasa publishes them to (default <queue>.exchange: per
                         deployment, not Rasa's shared rasa-exchange)
  QC_EVENTS_EXCHANGE     our ticket + notification events (topic exchange, default qc.events)
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

PROFILE_ENV = "QC_PROFILE"
ACTIONS_TOKEN_ENV = "QC_ACTIONS_TOKEN"  # the action server's shared secret (bot/ops/actions_server.py)
PRODUCTION = "production"


class ProfileError(ValueError):
    """The production profile is on but a setting is missing or malformed."""


def is_production(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return (env.get(PROFILE_ENV) or "").strip().lower() == PRODUCTION


def _require(env: Mapping[str, str], name: str, schemes: tuple) -> str:
    value = (env.get(name) or "").strip()
    if not value:
        raise ProfileError(f"{PROFILE_ENV}=production needs {name} (see docs/production.md)")
    if urlsplit(value).scheme.split("+")[0] not in schemes:
        raise ProfileError(f"{name} must be a {' or '.join(schemes)} URL")
    return value


@dataclass(frozen=True)
class ProductionSettings:
    database_url: str
    tracker_url: str
    tracker_schema: str | None
    redis_url: str
    lock_prefix: str | None
    amqp_url: str
    rasa_events_queue: str
    events_exchange: str
    rasa_exchange: str = ""  # empty: derived from the queue name (from_env)
    rasa_events_max_length: int = 100_000  # the Rasa event queue's bounds (bot/rasa_ext/eventbroker.py)
    rasa_events_ttl_hours: float = 168
    dead_letter_exchange: str = "qc.dead"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProductionSettings:
        env = os.environ if env is None else env
        prefix = (env.get("QC_LOCK_PREFIX") or "").strip() or None
        if prefix is not None and not prefix.isalnum():
            raise ProfileError("QC_LOCK_PREFIX must be alphanumeric (Rasa's rule for lock key prefixes)")
        queue = (env.get("QC_RASA_EVENTS_QUEUE") or "qc_rasa_events").strip()
        return cls(
            database_url=_require(env, "QC_DATABASE_URL", ("postgresql",)),
            tracker_url=_require(env, "QC_TRACKER_DB_URL", ("postgresql",)),
            tracker_schema=(env.get("QC_TRACKER_DB_SCHEMA") or "").strip() or None,
            redis_url=_require(env, "QC_REDIS_URL", ("redis",)),
            lock_prefix=prefix,
            amqp_url=_require(env, "QC_AMQP_URL", ("amqp",)),
            rasa_events_queue=queue,
            # Rasa's default exchange, rasa-exchange, is shared by every deployment on the vhost
            rasa_exchange=(env.get("QC_RASA_EXCHANGE") or "").strip() or f"{queue}.exchange",
            events_exchange=(env.get("QC_EVENTS_EXCHANGE") or "qc.events").strip(),
            rasa_events_max_length=_positive(env, "QC_RASA_EVENTS_MAX_LENGTH", 100_000),
            rasa_events_ttl_hours=_positive(env, "QC_RASA_EVENTS_TTL_HOURS", 168),
            dead_letter_exchange=(env.get("QC_DEAD_LETTER_EXCHANGE") or "qc.dead").strip(),
        )


def _positive(env: Mapping[str, str], name: str, default: float) -> Any:
    raw = (env.get(name) or "").strip()
    try:
        value = type(default)(raw) if raw else default
    except ValueError:
        raise ProfileError(f"{name} must be a number, not {raw!r}") from None
    if value <= 0:
        raise ProfileError(f"{name} must be positive")
    return value


def endpoints_yaml(action_url: str, env: Mapping[str, str] | None = None,
                   embedded_tracker_db: str | None = None) -> str:
    """The Rasa endpoints file for this environment: the action server always; in the
    production profile also the tracker store, lock store and event broker. Passwords
    appear as ${VAR} references only (see rasa_env for the variables). Embedded profile:
    trackers in the SQLite file `embedded_tracker_db` when given, else in memory."""
    # no action of ours reads the domain: Rasa need not serialise it into every call
    action: dict[str, Any] = {"url": _Text(action_url), "enable_selective_domain": True}
    doc: dict[str, Any] = {"action_endpoint": action}
    if ((os.environ if env is None else env).get(ACTIONS_TOKEN_ENV) or "").strip():
        # the action server's shared secret (bot/ops/actions_server.py); Rasa substitutes it
        action["headers"] = {"Authorization": f"Bearer ${{{ACTIONS_TOKEN_ENV}}}"}
    if not is_production(env):
        if embedded_tracker_db:
            # not in memory: a model swapped in through PUT /model (the console's 启用) gets a
            # fresh agent, and conversations in progress must go on with it
            # (bot/rasa_ext/sqlite_trackerstore.py: Rasa's SQL store on SQLite costs ~40 % of its CPU)
            doc["tracker_store"] = {"type": "bot.rasa_ext.sqlite_trackerstore.SQLiteTrackerStore",
                                    "db": _Text(embedded_tracker_db)}
        return _dump(doc)
    s = ProductionSettings.from_env(env)
    t = urlsplit(s.tracker_url)
    tracker: dict[str, Any] = {
        # Rasa's SQL tracker store that rides out a restart and never falls back to
        # memory quietly (see bot/rasa_ext/trackerstore.py).
        "type": "bot.rasa_ext.trackerstore.ResilientSQLTrackerStore",
        "dialect": "postgresql",
        "url": _Text(t.hostname or "127.0.0.1"),
        "port": t.port or 5432,
        "db": _Text(unquote(t.path.lstrip("/")) or "qingcheng_tracker"),
    }
    if t.username:
        tracker["username"] = _Text(unquote(t.username))
    if t.password:
        tracker["password"] = "${QC_TRACKER_DB_PASSWORD}"
    r = urlsplit(s.redis_url)
    lock: dict[str, Any] = {
        # Rasa's RedisLockStore with atomic ticket changes (see bot/rasa_ext/lockstore.py).
        "type": "bot.rasa_ext.lockstore.AtomicRedisLockStore",
        "url": _Text(r.hostname or "127.0.0.1"),
        "port": r.port or 6379,
        "db": int(r.path.lstrip("/") or 1),
    }
    if r.username:
        lock["username"] = _Text(unquote(r.username))
    if r.password:
        lock["password"] = "${QC_REDIS_PASSWORD}"
    if s.lock_prefix:
        lock["key_prefix"] = _Text(s.lock_prefix)
    a = urlsplit(s.amqp_url)
    doc.update(tracker_store=tracker, lock_store=lock, event_broker={
        "type": "bot.rasa_ext.eventbroker.BoundedPikaEventBroker",
        "url": _Text(a.hostname or "127.0.0.1"),
        "port": a.port or 5672,
        "username": _Text(unquote(a.username or "guest")),
        "password": "${QC_AMQP_PASSWORD}",
        "queues": [_Text(s.rasa_events_queue)],
        "exchange_name": _Text(s.rasa_exchange or s.rasa_events_queue + ".exchange"),
        # bounded and dead-lettered: nobody of ours reads it (docs/production.md)
        "max_length": s.rasa_events_max_length,
        "message_ttl_ms": int(s.rasa_events_ttl_hours * 3600 * 1000),
        "dead_letter_exchange": _Text(s.dead_letter_exchange),
        # Rasa keeps events it could not publish and sends them when RabbitMQ is back.
        "should_keep_unpublished_messages": True,
        "raise_on_failure": False,
    })
    return _dump(doc)


class _Text(str):
    """A value from the environment (host, name, path): always written double-quoted, with
    backslashes escaped. Rasa runs an all-ASCII file through raw_unicode_escape before
    parsing it, so a lone backslash (e.g. in a single-quoted scalar) would break the file."""


def _dump(doc: Mapping[str, Any]) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):  # safe_dump's dumper + the one style above
        pass

    Dumper.add_representer(_Text, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", str(v), style='"'))
    # ${VAR} stays a plain scalar: Rasa substitutes plain scalars only
    return yaml.dump(doc, Dumper=Dumper, allow_unicode=True, sort_keys=False, default_flow_style=False)


def rasa_env(env: Mapping[str, str] | None = None) -> dict:
    """Variables the Rasa server needs besides the endpoints file: the passwords the file
    refers to, and the tracker schema (Rasa reads POSTGRESQL_SCHEMA)."""
    env = os.environ if env is None else env
    if not is_production(env):
        return {}
    s = ProductionSettings.from_env(env)
    out = {
        "QC_TRACKER_DB_PASSWORD": unquote(urlsplit(s.tracker_url).password or ""),
        "QC_REDIS_PASSWORD": unquote(urlsplit(s.redis_url).password or ""),
        "QC_AMQP_PASSWORD": unquote(urlsplit(s.amqp_url).password or "guest"),
    }
    if s.tracker_schema:
        out["POSTGRESQL_SCHEMA"] = s.tracker_schema
    return out
