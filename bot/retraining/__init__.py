"""Retraining from what residents really said: the review inbox (collect, group, mask),
annotation into data/nlu (atomic, deduplicated), background training with a
single-run lock, evaluation against the active model, activation and rollback."""
