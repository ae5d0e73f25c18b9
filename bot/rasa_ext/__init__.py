"""Extensions Rasa loads by class path or that patch it: tracker stores, the lock store, the
event broker, the action-server-down handling and the speed-ups."""
