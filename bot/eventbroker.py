# Public path: endpoints files already generated (`python -m bot endpoints`) name bot.eventbroker.
from bot.rasa_ext.eventbroker import BoundedPikaEventBroker  # noqa: F401
