"""The store knows every queue and the routing catalogue after start-up (SQLite and PostgreSQL)."""
from __future__ import annotations

from sqlalchemy import func, select

from bot.services.setup import prepare_store
from bot.storage.tables import queues, routing_rules


def test_prepare_store_syncs_queues_and_rules_idempotently(engine):
    prepare_store(engine)
    prepare_store(engine)  # every start runs it again: nothing doubles
    with engine.connect() as conn:
        kinds = dict(conn.execute(select(queues.c.kind, func.count()).group_by(queues.c.kind)).all())
        assert kinds == {"department": 23, "dispatch": 1, "street": 99}
        assert conn.execute(select(queues.c.name).where(queues.c.code == "street:150102001")).scalar_one() == "海拉尔东路街道"
        assert conn.execute(select(queues.c.name).where(queues.c.code == "dispatch_center")).scalar_one() == "12345派单中心"
        rule = conn.execute(select(routing_rules).where(routing_rules.c.category == "drainage")).mappings().one()
        assert (rule["lead"], list(rule["co"]), rule["dispatch_class"]) == ("drainage_authority", ["urban_management"], "normal")
        assert conn.execute(select(func.count()).select_from(routing_rules)).scalar_one() == 22
