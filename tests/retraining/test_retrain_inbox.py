"""The review inbox: masking, grouping by similar text, no duplicates from retries,
dispatcher corrections recorded with the ticket event."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.retraining.collect import fallback_source
from bot.retraining.inbox import (
    Sample,
    accepted_examples,
    group_key,
    inbox_groups,
    record,
    review_group,
    sample_from_parse,
)
from bot.retraining.tables import review_items

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)


def test_phone_and_id_numbers_are_masked_before_storing(engine: Engine) -> None:
    text = "我电话13912345678，身份证150102199001011234，小区门口垃圾没人收 0471-6612345"
    with engine.begin() as conn:
        item_id = record(conn, Sample("fallback", text, "k1", "sanitation", 0.21), NOW)
    with engine.connect() as conn:
        stored = conn.execute(select(review_items.c.text).where(review_items.c.id == item_id)).scalar_one()
    assert stored == "我电话139****5678，身份证150***********1234，小区门口垃圾没人收 0471-****45"
    assert "13912345678" not in stored and "199001011234" not in stored


def test_a_retry_with_the_same_key_adds_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        first = record(conn, Sample("fallback", "暖气不热", "same", "heating", 0.2), NOW)
        again = record(conn, Sample("fallback", "暖气不热", "same", "heating", 0.2), NOW)
    assert first is not None and again is None
    with engine.connect() as conn:
        assert conn.execute(select(review_items.c.id)).scalars().all() == [first]


def test_button_payloads_and_empty_texts_are_not_collected(engine: Engine) -> None:
    with engine.begin() as conn:
        assert record(conn, Sample("fallback", "/dog", "a"), NOW) is None
        assert record(conn, Sample("fallback", "   ", "b"), NOW) is None


def test_groups_are_sorted_by_how_often_similar_texts_occur(engine: Engine) -> None:
    texts = ["楼下 烧烤 太吵了！", "楼下烧烤太吵了", "楼下烧烤，太吵了。", "井盖丢了", "井盖丢了!!", "路灯不亮"]
    with engine.begin() as conn:
        for i, t in enumerate(texts):
            record(conn, Sample("fallback", t, f"k{i}", "noise", 0.2), NOW)
    with engine.connect() as conn:
        groups = inbox_groups(conn)
    assert [(g.group_key, g.count) for g in groups] == [("楼下烧烤太吵了", 3), ("井盖丢了", 2), ("路灯不亮", 1)]
    assert groups[0].item["text"] == "楼下烧烤，太吵了。"  # the newest of the group is shown
    assert group_key("ＡＢＣ 暖气") == "abc暖气"


def test_accepting_marks_the_whole_group_and_spans_stay_on_the_item(engine: Engine) -> None:
    with engine.begin() as conn:
        a = record(conn, Sample("fallback", "新城区楼下烧烤太吵", "a", "other", 0.1), NOW)
        b = record(conn, Sample("unsure", "新城区 楼下烧烤太吵", "b", "other", 0.35), NOW)
        c = record(conn, Sample("fallback", "井盖丢了", "c", "other", 0.1), NOW)
        spans = [{"start": 0, "end": 3, "entity": "district", "value": "新城区"}]
        assert review_group(conn, a, "accepted", "root", NOW, "noise", spans) == 2
        assert review_group(conn, c, "rejected", "root", NOW) == 1
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(review_items))}
        assert [rows[a].status, rows[b].status, rows[c].status] == ["accepted", "accepted", "rejected"]
        assert rows[a].entities == spans and rows[b].entities == []
        assert rows[b].intent == "noise" and rows[b].reviewed_by == "root"
        assert accepted_examples(conn) == [{"text": "新城区楼下烧烤太吵", "intent": "noise", "entities": spans}]
        assert inbox_groups(conn) == []


def test_sample_from_rasa_ranking_skips_nlu_fallback() -> None:
    ranking = [{"name": "nlu_fallback", "confidence": 0.3}, {"name": "noise", "confidence": 0.31},
               {"name": "dog", "confidence": 0.29}]
    s = sample_from_parse("unsure", "狗叫", ranking, "k")
    assert (s.predicted_intent, s.confidence, s.second_intent, s.second_confidence) == ("noise", 0.31, "dog", 0.29)
    assert fallback_source(ranking) == "unsure"
    assert fallback_source([{"name": "noise", "confidence": 0.12}]) == "fallback"


def test_the_fallback_threshold_is_read_from_the_pipeline_config(tmp_path, monkeypatch) -> None:
    from bot.retraining import collect

    assert collect.fallback_threshold() == 0.3  # config.yml's FallbackClassifier
    config = tmp_path / "config.yml"
    config.write_text("pipeline:\n  - name: WhitespaceTokenizer\n  - name: FallbackClassifier\n"
                      "    threshold: 0.5\n", encoding="utf-8")
    monkeypatch.setattr(collect, "CONFIG", config)
    assert collect.fallback_threshold() == 0.5
    assert fallback_source([{"name": "noise", "confidence": 0.45}]) == "fallback"
    assert fallback_source([{"name": "noise", "confidence": 0.5}]) == "unsure"
    config.write_text("pipeline:\n  - name: WhitespaceTokenizer\n", encoding="utf-8")
    monkeypatch.setattr(collect, "CONFIG", tmp_path / "config.yml.copy")
    (tmp_path / "config.yml.copy").write_text(config.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ValueError, match="one FallbackClassifier"):
        collect.fallback_threshold()
