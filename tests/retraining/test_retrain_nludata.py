"""Annotation into the training data: spans snapped to jieba tokens (with a warning),
examples in the file of their intent (deduplicated, the rest untouched), place names,
and atomic writes (a crash mid-write leaves the old file whole)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.retraining import nludata
from bot.retraining.nludata import SpanError, add_examples, add_place, atomic_write, find_span, markup, snap_span


def test_a_span_on_token_boundaries_is_kept_without_warning(data_dir: Path) -> None:
    span = find_span("如意社区有好几只流浪狗", "如意社区", "community", data_dir / "dictionaries")
    assert (span.start, span.end, span.text, span.warning) == (0, 4, "如意社区", "")


def test_a_span_inside_a_token_is_snapped_and_warned_about(data_dir: Path) -> None:
    text = "如意社区有好几只流浪狗"
    span = snap_span(text, 0, 2, "community", data_dir / "dictionaries")  # 如意 of 如意社区
    assert (span.start, span.end, span.text) == (0, 4, "如意社区")
    assert span.warning.startswith("「如意」与分词边界不一致，已调整为「如意社区」")


def test_spans_that_cannot_be_marked_are_refused(data_dir: Path) -> None:
    with pytest.raises(SpanError, match="句子里没有"):
        find_span("暖气不热", "如意社区", "community", data_dir / "dictionaries")
    with pytest.raises(SpanError, match="不是一个词"):
        snap_span("暖气 不热", 2, 3, "place", data_dir / "dictionaries")
    with pytest.raises(SpanError, match="未知的实体类型"):
        snap_span("暖气不热", 0, 2, "person", data_dir / "dictionaries")


def test_markup_escapes_the_residents_brackets() -> None:
    spans = [{"start": 0, "end": 4, "entity": "community", "value": "如意社区"}]
    assert markup("如意社区[狗](叫)", spans) == "[如意社区](community)［狗］（叫）"


def test_examples_go_to_the_block_of_their_intent_deduplicated(data_dir: Path) -> None:
    nlu = data_dir / "nlu"
    before = (nlu / "environment.yml").read_text(encoding="utf-8")
    others = {p.name: p.read_bytes() for p in nlu.glob("*.yml") if p.name != "environment.yml"}
    path, added = add_examples(nlu, "noise", ["楼下广场舞的音箱咚咚响到十点", "楼下广场舞的音箱咚咚响到十点！"])
    assert path == nlu / "environment.yml"
    assert added == ["楼下广场舞的音箱咚咚响到十点", "楼下广场舞的音箱咚咚响到十点！"]
    after = path.read_text(encoding="utf-8")
    # exactly two lines inserted, right after the last example of the noise block
    lines_before, lines_after = before.splitlines(), after.splitlines()
    start = lines_before.index("- intent: noise")
    end = next(i for i in range(start + 1, len(lines_before)) if lines_before[i].startswith("- "))
    last = max(i for i in range(start, end) if lines_before[i].startswith("    - "))
    assert lines_after == lines_before[: last + 1] + [
        "    - 楼下广场舞的音箱咚咚响到十点", "    - 楼下广场舞的音箱咚咚响到十点！"] + lines_before[last + 1:]
    assert {p.name: p.read_bytes() for p in nlu.glob("*.yml") if p.name != "environment.yml"} == others
    # the same text again (markup or not): nothing is written
    mtime = path.stat().st_mtime_ns
    assert add_examples(nlu, "noise", ["楼下广场舞的音箱咚咚响到十点"]) == (None, [])
    assert path.stat().st_mtime_ns == mtime
    from rasa.shared.nlu.training_data.loading import load_data

    texts = {m.get("text"): m.get("intent") for m in load_data(str(nlu)).training_examples}
    assert texts["楼下广场舞的音箱咚咚响到十点"] == "noise"


def test_a_text_another_intent_has_is_refused(data_dir: Path) -> None:
    before = {p.name: p.read_bytes() for p in (data_dir / "nlu").glob("*.yml")}
    with pytest.raises(ValueError, match="已是意图 dog 的训练样本"):
        add_examples(data_dir / "nlu", "noise", ["遛狗不牵绳"])
    assert {p.name: p.read_bytes() for p in (data_dir / "nlu").glob("*.yml")} == before


def test_an_intent_without_a_file_goes_to_inbox_yml(data_dir: Path) -> None:
    nlu = data_dir / "nlu"
    path, added = add_examples(nlu, "brand_new", ["[如意社区](community)新说法"])
    assert path == nlu / "inbox.yml" and added == ["[如意社区](community)新说法"]
    assert path.read_text(encoding="utf-8") == (
        'version: "3.1"\nnlu:\n- intent: brand_new\n  examples: |\n    - [如意社区](community)新说法\n')
    assert add_examples(nlu, "brand_new", ["如意社区新说法"]) == (None, [])  # same plain text


def test_a_new_place_goes_to_the_mapping_table_and_the_dictionary(data_dir: Path) -> None:
    assert add_place(data_dir, "青城智谷", "150105", "", "") is True
    assert add_place(data_dir, "青城智谷") is False
    assert (data_dir / "locations" / "places.csv").read_text(encoding="utf-8").endswith("青城智谷,,150105,,,审核页添加\n")
    assert "青城智谷 50000 ns\n" in (data_dir / "dictionaries" / "places.txt").read_text(encoding="utf-8")
    from bot.reference.gazetteer import read_places_csv

    assert "place:青城智谷" in [p.code for p, _ in read_places_csv(data_dir / "locations" / "places.csv")]
    with pytest.raises(ValueError):
        add_place(data_dir, "a,b")
    with pytest.raises(ValueError):
        add_place(data_dir, "好地方", street_code="abc")


def test_atomic_write_leaves_the_old_file_whole_when_writing_fails(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "x.yml"
    target.write_text("old\n", encoding="utf-8")

    def crash(fd: int) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(nludata.os, "fsync", crash)
    with pytest.raises(OSError):
        atomic_write(target, "new text that never lands\n")
    monkeypatch.undo()
    assert target.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.yml"]  # no temp file left behind
    atomic_write(target, "new\n")
    assert target.read_text(encoding="utf-8") == "new\n"


def test_atomic_write_replaces_by_rename(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "y.yml"
    target.write_text("old\n", encoding="utf-8")
    seen = []
    real = os.replace
    monkeypatch.setattr(nludata.os, "replace", lambda a, b: (seen.append((Path(a).parent, Path(b))), real(a, b)))
    atomic_write(target, "new\n")
    assert seen == [(tmp_path, target)]


def test_concurrent_accepts_lose_no_example(data_dir: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"楼下第{i}家饭店油烟熏得开不了窗" for i in range(12)]
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda t: add_examples(data_dir / "nlu", "street_order", [t]), texts))
    from bot.retraining.nludata import existing_examples

    assert set(texts) <= existing_examples(data_dir / "nlu")["street_order"]


HAND_WRITTEN = '''version: "3.1"

# Noise, written by hand: comments, a quoted intent name, a wider indent.
nlu:
- intent: "noise"   # quoted: still the noise intent
  examples: |
      - 楼下太吵
      - [新城区](district)广场舞

  # the block above ends here
- intent: dog
  examples: |
    - 狗叫了一夜
'''


def test_an_accept_into_a_hand_written_file_keeps_its_comments_and_other_blocks(tmp_path: Path) -> None:
    nlu = tmp_path / "nlu"
    nlu.mkdir()
    (nlu / "noise.yml").write_text(HAND_WRITTEN, encoding="utf-8")
    path, added = add_examples(nlu, "noise", ["夜里装修电钻响"])
    assert (path, added) == (nlu / "noise.yml", ["夜里装修电钻响"])
    assert not (nlu / "inbox.yml").exists()  # the quoted intent name was found
    text = path.read_text(encoding="utf-8")
    head, rest = text.split("  examples: |\n", 1)
    assert head == HAND_WRITTEN.split("  examples: |\n", 1)[0]  # comments and quotes above untouched
    assert "    - 楼下太吵\n    - [新城区](district)广场舞\n    - 夜里装修电钻响\n" in rest
    assert rest.endswith("  # the block above ends here\n- intent: dog\n  examples: |\n    - 狗叫了一夜\n")
    from rasa.shared.nlu.training_data.loading import load_data

    texts = {m.get("text"): m.get("intent") for m in load_data(str(nlu)).training_examples}
    assert texts == {"楼下太吵": "noise", "新城区广场舞": "noise", "夜里装修电钻响": "noise", "狗叫了一夜": "dog"}
    # undone: the example goes, everything else stays
    assert nludata.remove_examples(nlu, "noise.yml", ["夜里装修电钻响"]) == ["夜里装修电钻响"]
    assert "夜里装修电钻响" not in path.read_text(encoding="utf-8")
    assert nludata.existing_examples(nlu) == {"noise": {"楼下太吵", "新城区广场舞"}, "dog": {"狗叫了一夜"}}


def test_an_accept_and_its_undo_leave_a_data_file_byte_for_byte(data_dir: Path) -> None:
    nlu = data_dir / "nlu"
    before = {p.name: p.read_bytes() for p in nlu.glob("*.yml")}
    path, added = add_examples(nlu, "greet", ["您好 我想反映个事"])
    assert path.name == "chitchat.yml" and added == ["您好 我想反映个事"]
    assert nludata.remove_examples(nlu, path.name, added) == added
    assert {p.name: p.read_bytes() for p in nlu.glob("*.yml")} == before
