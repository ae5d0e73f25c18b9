"""A store ready for work: the schema, then the queues and routing rules as the reference data
says now. Every process that writes tickets runs it at start (serve, cluster, CLI); it is idempotent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy.engine import Engine

from bot.reference.gazetteer import default_gazetteer
from bot.reference.routing import default_catalogue
from bot.services.tickets import sync_queues, sync_routing_rules
from bot.storage.engine import init_db
from bot.storage.uow import SqlAlchemyUnitOfWork


def reference_queues(catalogue: Any, gazetteer: Any) -> Iterator[dict[str, str]]:
    """Every queue a ticket can be routed to: departments (incl. 派单中心) and streets."""
    for code, name in catalogue.departments.items():
        yield {"code": code, "name": name, "kind": "dispatch" if code == "dispatch_center" else "department"}
    for place in gazetteer.places.values():
        if place.level == "street":
            yield {"code": f"street:{place.code}", "name": place.name, "kind": "street"}


def prepare_store(eng: Engine) -> None:
    """Schema, then the queues and the routing catalogue as the data files say now."""
    init_db(eng)
    cat = default_catalogue()
    sync_queues(SqlAlchemyUnitOfWork(eng), list(reference_queues(cat, default_gazetteer())))
    sync_routing_rules(SqlAlchemyUnitOfWork(eng), [
        {"category": r.code, "lead": r.lead, "co": list(r.co), "dispatch_class": r.dispatch_class.value}
        for r in cat.categories.values()
    ])
