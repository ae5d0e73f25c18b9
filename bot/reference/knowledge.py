"""Policy questions (consult): answered from data/knowledge/consult.yml, which admins edit.

A topic is chosen only when the question shares enough keywords with it; otherwise the
answer is the knowledge base's fallback, which points to the 12345 hotline rather than
inventing a rule.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.paths import DATA_DIR
from bot.text import normalise

KNOWLEDGE_PATH = DATA_DIR / "knowledge" / "consult.yml"


@dataclass(frozen=True)
class Topic:
    id: str
    title: str
    keywords: Sequence[str]
    answer: str


@dataclass(frozen=True)
class Answer:
    topic_id: str | None
    text: str


class KnowledgeBase:
    def __init__(self, topics: list[Topic], fallback: str):
        self.topics = topics
        self.fallback = fallback

    @classmethod
    def load(cls, path: Path = KNOWLEDGE_PATH) -> KnowledgeBase:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        topics = [
            Topic(str(t["id"]), str(t.get("title", t["id"])), tuple(str(k) for k in t.get("keywords") or ()),
                  str(t["answer"]).strip())
            for t in raw.get("topics") or []
        ]
        return cls(topics, str(raw.get("fallback") or "请拨打 12345 市民服务热线咨询。"))

    def answer(self, question: str) -> Answer:
        """Best topic by matched keyword length (longer keywords are more specific)."""
        q = normalise(question or "").lower()
        best, best_score = None, 0
        for topic in self.topics:
            score = sum(len(k) for k in topic.keywords if k and k.lower() in q)
            if score > best_score:
                best, best_score = topic, score
        if best is None or best_score < 2:
            return Answer(None, self.fallback)
        return Answer(best.id, best.answer)


_cache: dict[Path, tuple[tuple[int, int, int], KnowledgeBase]] = {}
_cache_lock = threading.Lock()


def default_knowledge(path: Path | None = None) -> KnowledgeBase:
    """The knowledge base, read again when the file changed (a topic an agent added from the
    console answers at once, without a restart); the same object while it has not."""
    path = path or KNOWLEDGE_PATH
    st = path.stat()
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)  # os.replace gives a new inode
    with _cache_lock:
        cached = _cache.get(path)
        if cached is None or cached[0] != stamp:
            cached = (stamp, KnowledgeBase.load(path))
            _cache[path] = cached
        return cached[1]
