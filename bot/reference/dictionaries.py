"""jieba user dictionaries (data/dictionaries/, the folder JiebaTokenizer's dictionary_path names).

gazetteer.txt is generated from the gazetteer and the place mapping table, so every
place name a resident may write is one token (entity spans then align with tokens);
domain.txt is hand-written complaint vocabulary. `python -m bot dict` regenerates.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bot.paths import DATA_DIR
from bot.reference.gazetteer import Gazetteer

DICTIONARY_DIR = DATA_DIR / "dictionaries"
GAZETTEER_DICT = DICTIONARY_DIR / "gazetteer.txt"
# High enough that a whole name beats any split of it, in or out of context.
PLACE_FREQ = 50000


def gazetteer_dictionary_lines(gazetteer: Gazetteer) -> list[str]:
    return [f"{alias} {PLACE_FREQ} ns" for alias in sorted(gazetteer.aliases) if " " not in alias]


def write_gazetteer_dictionary(gazetteer: Gazetteer, path: Path = GAZETTEER_DICT) -> Path:
    text = "\n".join(gazetteer_dictionary_lines(gazetteer)) + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # atomic: a running tokenizer never reads half a file
    return path


def dictionary_files(folder: Path = DICTIONARY_DIR) -> Iterable[Path]:
    return sorted(p for p in folder.glob("*.txt"))


_loaded: set = set()


def load_into_jieba(folder: Path = DICTIONARY_DIR) -> None:
    """Load our dictionaries into jieba's global tokenizer once per process (spaCy's
    jieba segmenter and Rasa's JiebaTokenizer share it)."""
    import jieba

    for path in dictionary_files(folder):
        key = (str(path), path.stat().st_mtime)
        if key not in _loaded:
            jieba.load_userdict(str(path))
            _loaded.add(key)
