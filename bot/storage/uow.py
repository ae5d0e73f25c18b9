"""Unit of work: one transaction per `with` block; nothing is kept without commit()."""

from __future__ import annotations

import abc
from types import TracebackType

from sqlalchemy.engine import Connection, Engine

from bot.storage.repository import AbstractTicketRepository, SqlTicketRepository


class AbstractUnitOfWork(abc.ABC):
    tickets: AbstractTicketRepository

    def __enter__(self) -> AbstractUnitOfWork:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Rolling back after a commit is a no-op, so this is always safe.
        self.rollback()

    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def rollback(self) -> None: ...


class SqlAlchemyUnitOfWork(AbstractUnitOfWork):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    def __enter__(self) -> SqlAlchemyUnitOfWork:
        if self._conn is not None:
            raise RuntimeError("unit of work is already in use")
        # A future-style connection begins a transaction on first use.
        self._conn = self.engine.connect()
        self.tickets = SqlTicketRepository(self._conn)
        super().__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            super().__exit__(exc_type, exc, tb)
        finally:
            assert self._conn is not None
            self._conn.close()
            self._conn = None

    def commit(self) -> None:
        self.connection().commit()

    def rollback(self) -> None:
        self.connection().rollback()

    def connection(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("unit of work used outside its `with` block")
        return self._conn
