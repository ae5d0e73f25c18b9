"""rasa-sdk actions: thin adapters from the tracker to `bot`'s services.
One module per concern; the action server loads this package (`rasa run actions`)."""
