"""Before the assistant: a resident's message that answers a handler's question.

Every chat channel (REST, the widget's Socket.IO, WeChat) passes its messages through
`AnswerDesk.wrap(on_new_message)`: a message that answers an open question on one of the
resident's tickets (bot/services/questions.py) is attached to the ticket and acknowledged on
the same output channel; it never reaches Rasa's NLU (which would read "在3号楼门口" as a new
complaint). Any other message goes to the assistant unchanged. When the ticket store cannot
be reached the message goes to the assistant too: it is never dropped.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from rasa.core.channels.channel import UserMessage

from bot.services.questions import take_answer
from bot.storage.uow import SqlAlchemyUnitOfWork
from bot.text import mask_personal_data

log = logging.getLogger(__name__)
OnMessage = Callable[[UserMessage], Awaitable[Any]]


class AnswerDesk:
    def __init__(self, engine: Any = None, engine_of: Callable[[], Any] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self._engine = engine
        self._engine_of = engine_of
        self._lock = threading.Lock()
        self.clock = clock

    @property
    def engine(self) -> Any:
        """The ticket store; None while there is none yet (nothing can have been asked)."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._engine_of() if self._engine_of is not None else _ticket_store()
        return self._engine

    def wrap(self, on_new_message: OnMessage) -> OnMessage:
        async def handle(message: UserMessage) -> Any:
            if self.engine is None:
                return await on_new_message(message)
            try:
                attached = await asyncio.to_thread(
                    take_answer, SqlAlchemyUnitOfWork(self.engine), message.sender_id, message.text or "",
                    self.clock(), None, message.input_channel == "wechat")
            except Exception:  # noqa: BLE001 - the store is down: the assistant still gets the message
                log.exception("answer lookup for %s failed", mask_personal_data(message.sender_id))
                attached = None
            if attached is None:
                return await on_new_message(message)
            log.info("answer from %s attached to %s%s", mask_personal_data(message.sender_id), attached.number,
                     " (again: not attached twice)" if attached.duplicate else "")
            await message.output_channel.send_text_message(message.sender_id, attached.reply)
            return None

        return handle


def _ticket_store() -> Any:
    """The ticket store the web server made (QC_DATABASE_URL, else var/qingcheng.db); None
    when the embedded file does not exist yet: a channel never creates the store itself."""
    from bot.paths import VAR_DIR
    from bot.storage.engine import DATABASE_URL_ENV, make_engine

    if not os.environ.get(DATABASE_URL_ENV) and not (VAR_DIR / "qingcheng.db").exists():
        return None
    return make_engine()


_default: AnswerDesk | None = None


def default_desk() -> AnswerDesk:
    """The REST and Socket.IO channels' desk, on the ticket store (QC_DATABASE_URL)."""
    global _default
    if _default is None:
        _default = AnswerDesk()
    return _default
