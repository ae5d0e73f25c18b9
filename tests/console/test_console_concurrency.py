"""Many people press 签收 on one ticket at the same moment: exactly one wins, the others
are told who has it (compare-and-set on the ticket's version). Real threads, real
databases: PostgreSQL (row locks + READ COMMITTED re-check) and SQLite (BEGIN IMMEDIATE)."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from bot.console import services as svc
from bot.console.uow import ConsoleUnitOfWork
from bot.storage.tables import ticket_events, tickets
from tests.console.helpers import STREET, file, now

WORKERS = 12


def test_concurrent_accepts_have_exactly_one_winner(engine: Engine) -> None:
    for i in range(WORKERS):
        svc.create_user(ConsoleUnitOfWork(engine), f"w{i}", f"网格员{i}", "long-password-1", "worker",
                        [f"street:{STREET}"], now())
    with ConsoleUnitOfWork(engine) as uow:
        people = [svc.Principal.of(uow.console.get_user_by_username(f"w{i}")) for i in range(WORKERS)]
    filed = file(engine, "k1")
    barrier = threading.Barrier(WORKERS)
    results: list[Any] = [None] * WORKERS

    def accept(i: int) -> None:
        barrier.wait()
        try:
            results[i] = svc.perform(ConsoleUnitOfWork(engine), people[i], filed.ticket_id, "accept", {}, now())
        except svc.ConsoleError as exc:
            results[i] = exc
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=accept, args=(i,)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [r for r in results if isinstance(r, svc.ActionResult)]
    losers = [r for r in results if isinstance(r, svc.ConsoleError)]
    assert len(winners) == 1, results
    assert len(losers) == WORKERS - 1, [r for r in results if not isinstance(r, (svc.ActionResult, svc.ConsoleError))]
    winner = people[results.index(winners[0])]
    assert all(f"已被 {winner.display_name} 签收" in e.message for e in losers)
    with engine.connect() as conn:
        accepts = conn.execute(
            select(func.count()).select_from(ticket_events).where(ticket_events.c.kind == "签收")
        ).scalar_one()
        state, version = conn.execute(select(tickets.c.state, tickets.c.version)).one()
    assert (accepts, state, version) == (1, "签收", 2)
