"""The Makefile documents itself: every target a person runs is .PHONY, has a rule and a
`## what it does` comment, and `make help` prints them all (a target in .PHONY without a
rule, like the old `test-fast`, fails here)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
RULE = re.compile(r"^([a-z][a-z0-9_-]*):(?!=)(.*)$", re.MULTILINE)


def phony() -> set[str]:
    (line,) = re.findall(r"^\.PHONY:(.*)$", MAKEFILE, re.MULTILINE)
    return set(line.split())


def rules() -> dict[str, str]:
    return {m.group(1): m.group(2) for m in RULE.finditer(MAKEFILE)}


def test_every_phony_target_has_a_rule_with_a_comment_and_every_commented_rule_is_phony() -> None:
    found = rules()
    assert sorted(phony() - set(found)) == []
    assert sorted(t for t in phony() if "## " not in found[t]) == []
    assert sorted(t for t, rest in found.items() if "## " in rest and t not in phony()) == []


def test_make_help_lists_every_target_with_its_comment() -> None:
    out = subprocess.run(["make", "-s", "--no-print-directory", "help"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    listed = dict(re.findall(r"^  ([a-z][a-z0-9_-]*) +(.+)$", out, re.MULTILINE))
    assert set(listed) == phony()
    for target, rest in rules().items():
        if target in listed:
            assert listed[target] == rest.split("## ", 1)[1].strip()


def test_make_test_lints_first_and_validates_data_with_warnings_as_failures() -> None:
    assert rules()["test"].split("##")[0].split()[0] == "lint"
    script = (REPO_ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
    assert "rasa data validate --fail-on-warnings" in script
    assert "data validate --fail-on-warnings" in MAKEFILE  # make validate: the same check
