# Public path: endpoints files already generated (`python -m bot endpoints`) name bot.lockstore.
from bot.rasa_ext.lockstore import AtomicRedisLockStore  # noqa: F401
