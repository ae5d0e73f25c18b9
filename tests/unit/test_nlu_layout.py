"""data/nlu is one file per theme (issue 16): each intent has one block in one file, so a
reader finds all of an intent's examples in one place and retraining appends to that block."""

from __future__ import annotations

import re
from collections import defaultdict

from bot.paths import REPO_ROOT

NLU_DIR = REPO_ROOT / "data" / "nlu"
_BLOCK = re.compile(r"^- (intent|regex|synonym|lookup): (\S+)\s*$", re.M)


def blocks_by_name() -> dict:
    found = defaultdict(list)
    for path in sorted(NLU_DIR.glob("*.yml")):
        for kind, name in _BLOCK.findall(path.read_text(encoding="utf-8")):
            found[(kind, name)].append(path.name)
    return found


def test_every_intent_has_one_block_in_one_file() -> None:
    spread = {name: files for (kind, name), files in blocks_by_name().items() if len(files) > 1}
    assert spread == {}


def test_the_themes() -> None:
    assert sorted(p.name for p in NLU_DIR.glob("*.yml")) == [
        "chitchat.yml", "emergency.yml", "environment.yml", "followup.yml", "housing.yml", "inform.yml",
        "livelihood.yml", "other.yml", "resident.yml", "service.yml", "streets.yml", "utilities.yml"]
    assert blocks_by_name()[("intent", "emergency")] == ["emergency.yml"]
