"""Rasa's RabbitMQ event broker with a bounded queue.

Rasa declares its event queue (QC_RASA_EVENTS_QUEUE, default qc_rasa_events) durable and
unbounded. Nothing of ours consumes it — it is there for whoever archives or analyses
conversations — so with no reader it grew without bound (308 messages after a short
session; in a month, the broker's memory alarm). Here it is declared with a length limit
(QC_RASA_EVENTS_MAX_LENGTH, default 100000 messages) and a message TTL
(QC_RASA_EVENTS_TTL_HOURS, default 168 = 7 days); what falls off either end is
dead-lettered to the fanout exchange QC_DEAD_LETTER_EXCHANGE (default qc.dead), where an
operator may bind a queue to keep it (unbound: dropped).

Every event is published with phone and ID numbers masked, as the tracker stores keep them
(bot/rasa_ext/masked_events.py): the queue is a copy of the transcripts at rest.

RabbitMQ refuses to redeclare a queue with other arguments: a queue made by the old,
unbounded declaration must be deleted once (README "Production").

Used by the production endpoints file (bot/ops/production.py: type bot.rasa_ext.eventbroker.BoundedPikaEventBroker).
"""
from __future__ import annotations

from typing import Any

import aio_pika
from rasa.core.brokers.pika import PikaEventBroker

from bot.rasa_ext.masked_events import masked_event


def queue_arguments(max_length: int, ttl_ms: int, dead_letter_exchange: str) -> dict[str, Any]:
    return {"x-max-length": int(max_length), "x-overflow": "drop-head", "x-message-ttl": int(ttl_ms),
            "x-dead-letter-exchange": dead_letter_exchange}


class BoundedPikaEventBroker(PikaEventBroker):
    def __init__(self, *args: Any, max_length: int = 100_000, message_ttl_ms: int = 7 * 24 * 3600 * 1000,
                 dead_letter_exchange: str = "qc.dead", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue_arguments = queue_arguments(max_length, message_ttl_ms, dead_letter_exchange)
        self.dead_letter_exchange = dead_letter_exchange

    def publish(self, event: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().publish(masked_event(event, keep_pending=False), headers)

    async def _set_up_exchange(self, channel: aio_pika.RobustChannel) -> aio_pika.RobustExchange:
        await channel.declare_exchange(self.dead_letter_exchange, type=aio_pika.ExchangeType.FANOUT, durable=True)
        return await super()._set_up_exchange(channel)

    async def _bind_queue(self, queue_name: str, channel: aio_pika.RobustChannel,  # type: ignore[override]
                          exchange: aio_pika.Exchange) -> None:
        queue = await channel.declare_queue(queue_name, durable=True, arguments=self.queue_arguments)
        await queue.bind(exchange, "")
