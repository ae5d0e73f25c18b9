"""JiebaTokenizer that tokenises the normalised text (full-width → half-width, odd
spaces → space) and drops whitespace tokens. Normalisation is length-preserving, so
token offsets still index the text as typed, which Rasa keeps unchanged.

Place names found by the location extractor (which runs first) become one placeholder
token: the category of a complaint does not depend on which community it is in, and
without the mask the classifier learns "names a place → inform".
"""
from __future__ import annotations

from collections.abc import Sequence

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.tokenizers.jieba_tokenizer import JiebaTokenizer
from rasa.nlu.tokenizers.tokenizer import Token
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message

from bot.text import MAX_NLU_CHARS, normalise

LOCATION_SPANS = "location_spans"  # message property set by GazetteerEntityExtractor
LOCATION_TOKEN = "<loc>"


def jieba_tokens(text: str, masked: Sequence[tuple[int, int]] = ()) -> list[Token]:
    import jieba

    text = normalise(text or "")[:MAX_NLU_CHARS]
    tokens: list[Token] = []
    pos = 0
    for start, end in sorted(s for s in masked if s[0] < len(text)):
        if start < pos:
            continue
        tokens += [Token(w, pos + s) for (w, s, _e) in jieba.tokenize(text[pos:start]) if w.strip()]
        tokens.append(Token(LOCATION_TOKEN, start, end))
        pos = end
    tokens += [Token(w, pos + s) for (w, s, _e) in jieba.tokenize(text[pos:]) if w.strip()]
    return tokens


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_TOKENIZER, is_trainable=True)
class NormalisingJiebaTokenizer(JiebaTokenizer):
    def tokenize(self, message: Message, attribute: str) -> list[Token]:
        masked = message.get(LOCATION_SPANS) or () if attribute == TEXT else ()
        return self._apply_token_pattern(jieba_tokens(message.get(attribute), masked))
