# Public path: endpoints files already generated name bot.sqlite_trackerstore.
from bot.rasa_ext.sqlite_trackerstore import SQLiteTrackerStore  # noqa: F401
