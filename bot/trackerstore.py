# Public path: endpoints files already generated (`python -m bot endpoints`) name bot.trackerstore.
from bot.rasa_ext.trackerstore import ResilientSQLTrackerStore  # noqa: F401
