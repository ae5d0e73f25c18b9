"""The README is a map into docs/: every relative link in it and in docs/*.md points at a file
that exists, and every manual in docs/ is reachable from the README."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)  # Rasa markup like `[如意社区](community)` is no link


def pages() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def test_every_relative_link_points_at_a_file() -> None:
    broken = []
    for page in pages():
        for target in LINK.findall(CODE.sub("", page.read_text(encoding="utf-8"))):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (page.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{page.relative_to(REPO_ROOT)} → {target}")
    assert broken == []


def test_the_readme_is_a_short_map_that_links_every_manual() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    linked = set(LINK.findall(readme))
    assert sorted(f"docs/{p.name}" for p in (REPO_ROOT / "docs").glob("*.md") if f"docs/{p.name}" not in linked) == []
