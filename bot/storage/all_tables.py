"""Every module that defines tables on `bot.storage.tables.metadata`. init_db imports
this so all of them exist; a feature with its own tables adds one import line here."""
from bot.storage import tables  # noqa: F401  tickets, reports, events, queues, routing rules
