"""What the benchmark measures on: the held-out split, the training data, the folds."""
from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.domain.model import CATEGORIES
from bot.paths import REPO_ROOT

SPLIT_PATH = REPO_ROOT / "tests" / "data" / "test_split.jsonl"
NLU_DIR = REPO_ROOT / "data" / "nlu"
NONE = "none"
# The category labels of every figure: the 12 codes, then "not a complaint".
CATEGORY_LABELS: list[str] = [*CATEGORIES, NONE]


def category_label(intent: str | None) -> str:
    """The category an intent stands for: itself if it is one of the 12 codes, else "none"."""
    return intent if intent in CATEGORIES else NONE


@dataclass(frozen=True)
class Example:
    text: str
    intent: str
    street_code: str | None = None
    community_code: str | None = None
    ambiguous: bool = False

    @property
    def category(self) -> str:
        return category_label(self.intent)


def load_split(limit: int | None = None, seed: int = 0, path: Path = SPLIT_PATH) -> list[Example]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = [Example(r["text"], r["intent"], r.get("street_code"), r.get("community_code"), bool(r.get("ambiguous")))
           for r in rows]
    if limit is not None and limit < len(out):
        # keep the order of the file, take a seeded sample that still has locations in it
        keep = sorted(random.Random(seed).sample(range(len(out)), limit))
        out = [out[i] for i in keep]
    return out


def load_training(nlu_dir: Path = NLU_DIR):
    """Rasa's own loader over data/nlu/*.yml (the TrainingData, messages in file order)."""
    from rasa.shared.nlu.training_data.loading import load_data

    return load_data(str(nlu_dir))


def training_examples(td) -> list[Example]:
    return [Example(m.get("text"), m.get("intent")) for m in td.intent_examples]


def stratified_subsample(labels: Sequence[str], n: int, seed: int = 0) -> list[int]:
    """About n indices with every label kept (at least 2 each, so 2 folds can stratify)."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        by_label[y].append(i)
    per = max(2, round(n / max(1, len(by_label))))
    rng = random.Random(seed)
    out: list[int] = []
    for y in sorted(by_label):
        idx = by_label[y]
        out += rng.sample(idx, min(per, len(idx)))
    return sorted(out)


def folds(labels: Sequence[str], k: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """Stratified k-fold over the intents (sklearn), shuffled with a fixed seed."""
    from sklearn.model_selection import StratifiedKFold

    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(list(tr), list(te)) for tr, te in skf.split(list(range(len(labels))), list(labels))]


def write_nlu_yaml(td, indices: Sequence[int], path: Path) -> Path:
    """The chosen intent examples (entity annotations kept) plus the regexes, lookup tables
    and synonyms of the full data, as one Rasa YAML file (rasa's own writer)."""
    from rasa.shared.nlu.training_data.formats.rasa_yaml import RasaYAMLWriter
    from rasa.shared.nlu.training_data.training_data import TrainingData

    msgs = td.intent_examples
    sub = TrainingData(
        training_examples=[msgs[i] for i in indices],
        entity_synonyms=dict(td.entity_synonyms),
        regex_features=list(td.regex_features),
        lookup_tables=list(td.lookup_tables),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    RasaYAMLWriter().dump(path, sub)
    return path
