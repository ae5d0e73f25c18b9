"""Process-wide services for the action server: built once, on first use."""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

from bot.reference.gazetteer import default_gazetteer
from bot.reference.locations import LocationResolver
from bot.reference.routing import default_catalogue, default_router
from bot.storage.engine import init_db, make_engine
from bot.storage.uow import SqlAlchemyUnitOfWork

log = logging.getLogger(__name__)
T = TypeVar("T")

# Every store call from an action has its own short timeout: a stuck database must
# not hold the resident (or the Rasa server's action call) hostage.
STORE_TIMEOUT = float(os.environ.get("QC_STORE_TIMEOUT", "5"))

_lock = threading.Lock()
_engine = None


def engine():
    global _engine
    with _lock:
        if _engine is None:
            _engine = make_engine()
            init_db(_engine)
            from bot.storage.holidays import install

            install(_engine)  # deadlines use the city's holiday calendar
        return _engine


def reset_engine(new_engine=None) -> None:
    """Tests point the actions at their own database."""
    global _engine
    with _lock:
        _engine = new_engine


def uow() -> SqlAlchemyUnitOfWork:
    return SqlAlchemyUnitOfWork(engine())


async def run_store(fn: Callable[..., T], *args, timeout: float = None) -> T:
    return await asyncio.wait_for(asyncio.to_thread(fn, *args), timeout or STORE_TIMEOUT)


def resolver() -> LocationResolver:
    return _resolver_for(default_gazetteer())  # a new one when the place table was reloaded


@lru_cache(maxsize=1)
def _resolver_for(gazetteer) -> LocationResolver:
    return LocationResolver(gazetteer)


router = default_router
catalogue = default_catalogue
