"""The console's unit of work: the ticket store's, plus the console repository on the
same connection (one transaction covers a ticket event and the rows that go with it)."""

from __future__ import annotations

from bot.console.repository import ConsoleRepository
from bot.storage.uow import SqlAlchemyUnitOfWork


class ConsoleUnitOfWork(SqlAlchemyUnitOfWork):
    console: ConsoleRepository

    def __enter__(self) -> ConsoleUnitOfWork:
        super().__enter__()
        assert self._conn is not None
        self.console = ConsoleRepository(self._conn)
        return self
