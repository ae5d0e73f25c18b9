"""Messages with nothing to understand (empty, whitespace, emoji or punctuation only)
become `nlu_fallback` with certainty, whatever the classifier guessed, so the assistant
answers with a clear request for text instead of acting on noise."""
from __future__ import annotations

from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

from bot.text import input_issue

FALLBACK = "nlu_fallback"


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=False)
class InputGuard(GraphComponent):
    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {}

    @classmethod
    def create(cls, config, model_storage, resource, execution_context: ExecutionContext) -> InputGuard:
        return cls()

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            if input_issue(message.get(TEXT)) is None:
                continue
            intent = {"name": FALLBACK, "confidence": 1.0}
            ranking = [intent] + [r for r in (message.get(INTENT_RANKING_KEY) or []) if r.get("name") != FALLBACK]
            message.set(INTENT, intent, add_to_output=True)
            message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
        return messages
