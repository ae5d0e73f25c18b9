"""An agent's answer to a 咨询 question added to the knowledge base (data/knowledge/consult.yml)
from the console: checked against the loader's rules (bot/reference/knowledge.py) and the
house rule of tests/unit/test_knowledge.py (every answer points to 12345 or 110/119/120),
written atomically under the training data's lock (nludata.data_lock), the file's comments
and layout kept (ruamel round trip). The consult action sees it at its next question
(default_knowledge reloads a changed file)."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.reference.knowledge import KnowledgeBase, Topic
from bot.retraining.nludata import atomic_write, data_lock

KNOWLEDGE_FILE = Path("knowledge") / "consult.yml"  # under the data folder
TOPIC_ID = re.compile(r"[a-z][a-z0-9_]{2,47}")
HOTLINES = re.compile(r"12345|110|119|120")
MAX_TITLE, MAX_KEYWORD, MAX_KEYWORDS, MAX_ANSWER = 40, 10, 20, 600
_SPLIT = re.compile(r"[\s,，、;；/]+")


class KnowledgeError(ValueError):
    """Why the topic cannot be added, in words the agent reads."""


@dataclass(frozen=True)
class NewTopic:
    id: str
    title: str
    keywords: tuple[str, ...]
    answer: str


def split_keywords(raw: str) -> tuple[str, ...]:
    """"公积金 贷款，利率" → ("公积金", "贷款", "利率"), duplicates dropped, order kept."""
    return tuple(dict.fromkeys(k for k in _SPLIT.split(raw or "") if k))


def checked(topic_id: str, title: str, keywords: Sequence[str], answer: str) -> NewTopic:
    topic_id, title, answer = topic_id.strip(), " ".join(title.split()), answer.strip()
    if not TOPIC_ID.fullmatch(topic_id):
        raise KnowledgeError("编号只能用小写字母、数字和下划线，以字母开头，3–48 个字符，如 housing_fund_loan。")
    if not title or len(title) > MAX_TITLE:
        raise KnowledgeError(f"请填写标题（最多{MAX_TITLE}字）。")
    if not keywords or len(keywords) > MAX_KEYWORDS:
        raise KnowledgeError(f"请填写关键词（1–{MAX_KEYWORDS} 个，用空格或逗号分隔）。")
    if any(len(k) > MAX_KEYWORD for k in keywords):
        raise KnowledgeError(f"关键词要用居民会打的短词（每个最多{MAX_KEYWORD}字），不要写长句。")
    if all(len(k) < 2 for k in keywords):
        raise KnowledgeError("至少要有一个两字以上的关键词，否则这条答复永远不会被选中。")
    if not answer or len(answer) > MAX_ANSWER:
        raise KnowledgeError(f"请填写答复（最多{MAX_ANSWER}字）。")
    if not HOTLINES.search(answer):
        raise KnowledgeError("答复要引导居民拨打 12345（紧急情况 110/119/120），不写不确定的具体信息。")
    return NewTopic(topic_id, title, tuple(keywords), answer)


def _yaml() -> Any:
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)  # consult.yml's "topics:\n  - id: …"
    y.width = 1 << 16
    return y


def _entry(topic: NewTopic) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import LiteralScalarString

    keywords = CommentedSeq(topic.keywords)
    keywords.fa.set_flow_style()  # [a, b] as the file writes them
    return CommentedMap(id=topic.id, title=topic.title, keywords=keywords,
                        answer=LiteralScalarString(topic.answer + "\n"))


def add_topic(data_dir: Path, topic: NewTopic) -> Topic:
    """Append the topic to consult.yml (one writer at a time, atomically); KnowledgeError when
    its id exists or the file would not load."""
    path = Path(data_dir) / KNOWLEDGE_FILE
    with data_lock(data_dir):
        y = _yaml()
        doc = y.load(path.read_text(encoding="utf-8"))
        topics = doc.get("topics")
        if topics is None:
            raise KnowledgeError("知识库文件没有 topics，无法添加。")
        if any(str(t.get("id")) == topic.id for t in topics):
            raise KnowledgeError(f"编号 {topic.id} 已存在，请换一个。")
        topics.append(_entry(topic))
        out = io.StringIO()
        y.dump(doc, out)
        # a blank line before the new topic, as between the others
        text = re.sub(rf"\n(  - id: {topic.id}\n)", r"\n\n\1", out.getvalue(), count=1)
        tmp = path.with_name(f".{path.name}.check")
        try:
            tmp.write_text(text, encoding="utf-8")
            loaded = KnowledgeBase.load(tmp)  # the loader reads what we are about to write
        finally:
            tmp.unlink(missing_ok=True)
        new = next(t for t in loaded.topics if t.id == topic.id)
        atomic_write(path, text)
        return new
