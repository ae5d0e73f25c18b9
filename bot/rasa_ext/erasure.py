"""删除我的信息 reaches the transcript: the erasing action (actions/rights.py) sets the slot
ERASED_SLOT once the ticket store is done, and the tracker store that saves that turn deletes
every stored event of the conversation instead of appending the turn's (both stores:
bot/rasa_ext/sqlite_trackerstore.py, bot/rasa_ext/trackerstore.py). Done at save time, under
the conversation's lock: an action that deleted the events itself would see the Rasa server
write the whole tracker it holds back. The slot has a custom mapping: no message sets it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

ERASED_SLOT = "erased_at"


def erases(new_events: Iterable[Any]) -> bool:
    from rasa.shared.core.events import SlotSet  # here: the action server imports ERASED_SLOT only

    return any(isinstance(e, SlotSet) and e.key == ERASED_SLOT and e.value is not None for e in new_events)
