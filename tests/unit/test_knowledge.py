"""bot/reference/knowledge.py against data/knowledge/consult.yml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.reference.knowledge import KnowledgeBase, default_knowledge

FALLBACK = "这个问题我还不能确定，请拨打 12345 市民服务热线咨询，或留下问题由工作人员答复。"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load()


def test_loads_topics_and_fallback(kb: KnowledgeBase) -> None:
    ids = [t.id for t in kb.topics]
    assert len(ids) == len(set(ids)) >= 14
    assert {"dog_registration", "garbage_sorting", "heating_period", "hotline_12345"} <= set(ids)
    assert kb.fallback == FALLBACK
    assert default_knowledge() is default_knowledge()


@pytest.mark.parametrize(
    ("question", "topic"),
    [
        ("在呼和浩特养狗要办狗证吗？", "dog_registration"),
        ("怎么办犬证", "dog_registration"),
        ("垃圾分类怎么分", "garbage_sorting"),
        ("废电池属于什么垃圾", "garbage_sorting"),
        ("暖气什么时候来暖", "heating_period"),
        ("小广告怎么处罚", "illegal_ads"),
        ("怎么投诉", "complaint_howto"),
        ("１２３４５热线是干什么的", "hotline_12345"),  # full-width digits are normalised
        ("居住证去哪里办", "residence_permit"),
        ("我是外地户口在呼市租房，要办暂住证吗", "residence_permit"),
        ("单位要社保缴费证明，在哪开", "social_insurance_proof"),
        ("养老金资格认证怎么弄", "pension"),
    ],
)
def test_question_picks_topic(kb: KnowledgeBase, question: str, topic: str) -> None:
    answer = kb.answer(question)
    assert answer.topic_id == topic
    assert answer.text == next(t.answer for t in kb.topics if t.id == topic)


@pytest.mark.parametrize("question", ["今天天气怎么样", "你们几点下班", "", None, "ＡＢＣ", "哦"])
def test_unrelated_question_gets_the_fallback(kb: KnowledgeBase, question) -> None:
    answer = kb.answer(question)
    assert answer.topic_id is None
    assert answer.text == FALLBACK
    assert "12345" in answer.text


def test_every_answer_points_to_12345_or_emergency_numbers(kb: KnowledgeBase) -> None:
    # the rule for consult.yml: never invent details, point to the hotline instead
    for topic in kb.topics:
        assert re.search(r"12345|110|119|120", topic.answer), topic.id
        assert topic.answer.strip() == topic.answer and topic.answer
        assert topic.keywords, topic.id


def test_a_single_one_character_match_is_not_enough(tmp_path: Path) -> None:
    path = tmp_path / "consult.yml"
    path.write_text(
        "fallback: 请拨打 12345。\n"
        "topics:\n"
        "  - {id: a, keywords: [狗], answer: 狗的事}\n"
        "  - {id: b, keywords: [狗证, 办证], answer: 办证的事}\n",
        encoding="utf-8",
    )
    kb = KnowledgeBase.load(path)
    assert kb.answer("我家的狗").topic_id is None  # score 1 < 2
    assert kb.answer("狗证怎么办证").topic_id == "b"
    assert kb.answer("狗证怎么办证").text == "办证的事"
    assert kb.answer("狗狗狗").text == "请拨打 12345。"


def test_default_fallback_when_the_file_has_none(tmp_path: Path) -> None:
    path = tmp_path / "consult.yml"
    path.write_text("topics: []\n", encoding="utf-8")
    kb = KnowledgeBase.load(path)
    assert kb.answer("养狗").text == "请拨打 12345 市民服务热线咨询。"


def test_a_changed_file_is_read_again_and_an_unchanged_one_is_not(tmp_path: Path) -> None:
    """A topic an agent adds from the console answers without a restart (bot/retraining/knowledge.py
    replaces the file: a new inode)."""
    path = tmp_path / "consult.yml"
    path.write_text("topics:\n  - {id: a, keywords: [狗证], answer: 请拨打 12345}\n", encoding="utf-8")
    first = default_knowledge(path)
    assert default_knowledge(path) is first
    replaced = tmp_path / "new.yml"
    replaced.write_text("topics:\n  - {id: b, keywords: [犬证], answer: 请拨打 12345。}\n", encoding="utf-8")
    replaced.replace(path)
    assert [t.id for t in default_knowledge(path).topics] == ["b"]
    assert default_knowledge(path).answer("犬证").text == "请拨打 12345。"


@pytest.mark.parametrize(
    ("topic_id", "title", "keywords", "answer", "error"),
    [
        ("Bad-Id", "标题", ["公积金"], "请拨打 12345。", "编号只能用小写字母"),
        ("ok_id", "", ["公积金"], "请拨打 12345。", "请填写标题"),
        ("ok_id", "标题", [], "请拨打 12345。", "请填写关键词"),
        ("ok_id", "标题", ["公积金贷款额度怎么计算的"], "请拨打 12345。", "不要写长句"),
        ("ok_id", "标题", ["钱"], "请拨打 12345。", "至少要有一个两字以上的关键词"),
        ("ok_id", "标题", ["公积金"], "额度由公积金中心核定。", "答复要引导居民拨打 12345"),
    ],
)
def test_a_new_topic_follows_the_rules_of_the_file(topic_id, title, keywords, answer, error) -> None:
    from bot.retraining.knowledge import KnowledgeError, checked

    with pytest.raises(KnowledgeError, match=error):
        checked(topic_id, title, keywords, answer)
