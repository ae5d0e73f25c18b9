"""Every module that defines tables on `bot.storage.tables.metadata`. init_db imports
this so all of them exist; a feature with its own tables adds one import line here."""
from bot.channels.wechat import store as wechat_store  # noqa: F401  WeChat dedupe, nonces, residents, access_token
from bot.console import tables as console_tables  # noqa: F401  users, sessions, outbox, attachments, api keys
from bot.retraining import tables as retraining_tables  # noqa: F401  review inbox, model registry, training lock
from bot.storage import (
    handoff,  # noqa: F401  conversations handed to a person (转人工)
    pending_phones,  # noqa: F401  the phone a complaint form holds until filing
    questions,  # noqa: F401  handlers' questions to residents and the answers
    retention,  # noqa: F401  the background jobs' lease, anonymised tickets
    tables,  # noqa: F401  tickets, reports, events, queues, routing rules
)
