"""Ticket and notification events to RabbitMQ, for other city systems to subscribe to.

The database stays the source of truth: ticket_events (every ticket change, whoever made
it) and the notification outbox are read after a cursor (feed_cursors), published to a
topic exchange (QC_EVENTS_EXCHANGE, default qc.events) with publisher confirms, and the
cursor moves only after RabbitMQ confirmed every message of the batch. RabbitMQ down →
nothing moves, the notifier tries again next round; nothing is lost. A crash between the
confirm and the cursor update publishes a batch again: delivery is at least once, and
each message carries a stable message_id (ticket_event:<id>, notification:<id>) to
de-duplicate on.

Routing keys: ticket.<kind> (the kind as stored: ticket.受理, ticket.派单 …), notification.<event>.
"""
from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

TICKET_CURSOR = "amqp:ticket_events"
OUTBOX_CURSOR = "amqp:outbox"


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class EventPublisher:
    def __init__(self, amqp_url: str, exchange: str, engine: Engine, batch: int = 200,
                 timeout: float = 10.0) -> None:
        self.amqp_url = amqp_url
        self.exchange_name = exchange
        self.engine = engine
        self.batch = batch
        self.timeout = timeout
        self._connection = None
        self._exchange = None

    # --- database side (threads) ---------------------------------------------------------
    def _cursor(self, conn, name: str) -> int:
        from bot.console.tables import feed_cursors

        row = conn.execute(select(feed_cursors.c.last_event_id).where(feed_cursors.c.name == name)).first()
        return row[0] if row else 0

    def pending(self) -> list[tuple[str, str, str, dict[str, Any], int]]:
        """(cursor name, message id, routing key, body, row id) after both cursors."""
        from bot.console.tables import outbox
        from bot.storage.tables import ticket_events, tickets

        out = []
        with self.engine.connect() as conn:
            after = self._cursor(conn, TICKET_CURSOR)
            rows = conn.execute(
                select(ticket_events, tickets.c.number)
                .join(tickets, tickets.c.id == ticket_events.c.ticket_id)
                .where(ticket_events.c.id > after).order_by(ticket_events.c.id).limit(self.batch)
            ).mappings().all()
            for r in rows:
                body = {"type": "ticket_event", "id": r["id"], "ticket_id": r["ticket_id"], "ticket_number": r["number"],
                        "seq": r["seq"], "kind": r["kind"], "from_state": r["from_state"], "to_state": r["to_state"],
                        "actor": r["actor"], "reason": r["reason"], "data": r["data"], "at": _iso(r["at"])}
                out.append((TICKET_CURSOR, f"ticket_event:{r['id']}", f"ticket.{r['kind']}", body, r["id"]))
            after = self._cursor(conn, OUTBOX_CURSOR)
            rows = conn.execute(
                select(outbox.c.id, outbox.c.kind, outbox.c.channel, outbox.c.recipient, outbox.c.ticket_id,
                       outbox.c.event, outbox.c.payload, outbox.c.created_at)
                .where(outbox.c.id > after).order_by(outbox.c.id).limit(self.batch)
            ).mappings().all()
            for r in rows:
                body = {"type": "notification", **{k: _iso(v) for k, v in r.items()}}
                out.append((OUTBOX_CURSOR, f"notification:{r['id']}", f"notification.{r['event']}", body, r["id"]))
        return out

    def advance(self, cursors: dict[str, int]) -> None:
        from bot.console.tables import feed_cursors

        now = datetime.now(timezone.utc)
        with self.engine.begin() as conn:
            for name, last in cursors.items():
                done = conn.execute(feed_cursors.update().where(feed_cursors.c.name == name)
                                    .where(feed_cursors.c.last_event_id < last)
                                    .values(last_event_id=last, updated_at=now)).rowcount
                if not done and conn.execute(select(feed_cursors.c.name).where(feed_cursors.c.name == name)).first() is None:
                    conn.execute(feed_cursors.insert().values(name=name, last_event_id=last, updated_at=now))

    # --- RabbitMQ side ----------------------------------------------------------------------
    async def _ensure_exchange(self):
        import aio_pika

        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect(self.amqp_url, timeout=self.timeout)
            self._exchange = None
        if self._exchange is None:
            channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = await channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.TOPIC,
                                                            durable=True)
        return self._exchange

    async def publish_pending(self) -> int:
        """Publish everything after the cursors; returns how many RabbitMQ confirmed.
        Raises when RabbitMQ is unreachable or refuses (the cursors did not move)."""
        import aio_pika

        messages = await asyncio.to_thread(self.pending)
        if not messages:
            return 0
        confirmed: dict[str, int] = {}
        try:
            exchange = await self._ensure_exchange()
            for cursor, message_id, key, body, row_id in messages:
                msg = aio_pika.Message(json.dumps(body, ensure_ascii=False, default=str).encode("utf-8"),
                                       content_type="application/json", message_id=message_id,
                                       delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                # Returns after RabbitMQ's confirm (publisher_confirms), raises on a nack.
                await asyncio.wait_for(exchange.publish(msg, routing_key=key), self.timeout)
                confirmed[cursor] = row_id
        except BaseException:
            await self.close()
            if confirmed:  # keep what RabbitMQ confirmed before it went away
                try:
                    await asyncio.to_thread(self.advance, confirmed)
                except Exception:  # noqa: BLE001 - published again next round (at least once)
                    log.exception("could not record confirmed events")
            raise
        await asyncio.to_thread(self.advance, confirmed)
        return len(messages)

    async def close(self) -> None:
        conn, self._connection, self._exchange = self._connection, None, None
        if conn is not None and not conn.is_closed:
            try:
                await conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass


def publisher_from_env(engine: Engine) -> EventPublisher | None:
    """The production profile's publisher (None in the embedded default)."""
    from bot.ops.production import ProductionSettings, is_production

    if not is_production():
        return None
    s = ProductionSettings.from_env()
    return EventPublisher(s.amqp_url, s.events_exchange, engine)
