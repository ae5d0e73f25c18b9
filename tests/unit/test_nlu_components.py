"""NLU building blocks without a Rasa server: the location matcher (spaCy + jieba +
EntityRuler), the masking jieba tokenizer and the classifier's masked text."""

from __future__ import annotations

import pytest

from bot.nlu.locations import LocationMatcher, build_aliases, unknown_places
from bot.nlu.reading import MASK_CHAR, reading, reading_text
from bot.nlu.tokenizer import LOCATION_TOKEN, jieba_tokens
from bot.reference.gazetteer import Gazetteer

SENTENCE = "新城区公主府社区阳光花园小区3号楼门口有人遛狗不牵绳"


@pytest.fixture(scope="module")
def aliases() -> dict:
    return build_aliases(Gazetteer.load())


@pytest.fixture(scope="module")
def matcher(aliases: dict) -> LocationMatcher:
    return LocationMatcher(aliases)


def spans(ents) -> list[tuple[str, str, int, int]]:
    return [(e["entity"], e["value"], e["start"], e["end"]) for e in ents]


# --- build_aliases ------------------------------------------------------------------


def test_build_aliases_levels(aliases: dict) -> None:
    assert aliases["新城区"] == "district"
    assert aliases["土左旗"] == "district"
    assert aliases["乌兰察布东大街街道"] == "street"
    assert aliases["中山西路"] == "street"  # also a community's bare name: the higher level wins
    assert aliases["公主府社区"] == "community"
    assert aliases["公主府"] == "community"
    assert aliases["锦绣社区"] == "community"
    assert aliases["大召寺"] == "place"
    assert "大召" not in aliases


# --- LocationMatcher ----------------------------------------------------------------


def test_extracts_district_community_and_unknown_place(matcher: LocationMatcher) -> None:
    ents = matcher.extract(SENTENCE)
    assert spans(ents) == [
        ("district", "新城区", 0, 3),
        ("community", "公主府社区", 3, 8),
        ("place", "阳光花园小区", 8, 14),
    ]
    assert [e["text"] for e in ents] == ["新城区", "公主府社区", "阳光花园小区"]
    assert all(e["confidence_entity"] == 1.0 for e in ents)


def test_extracts_street_and_village(matcher: LocationMatcher) -> None:
    assert spans(matcher.extract("赛罕区乌兰察布东大街街道有人乱贴小广告")) == [
        ("district", "赛罕区", 0, 3), ("street", "乌兰察布东大街街道", 3, 12)]
    assert spans(matcher.extract("土左旗杨家堡村的路灯不亮")) == [
        ("district", "土左旗", 0, 3), ("community", "杨家堡村", 3, 7)]
    assert spans(matcher.extract("大召寺门口摆摊的太多")) == [("place", "大召寺", 0, 3)]
    # 沙尔沁 (a village) and 镇村 must not split the town's name
    assert spans(matcher.extract("沙尔沁镇村边上的养猪场")) == [("street", "沙尔沁镇", 0, 4)]


def test_value_is_the_alias_and_text_is_as_typed(matcher: LocationMatcher) -> None:
    ents = matcher.extract("公主府社区居委会门口有狗屎")
    assert spans(ents) == [("community", "公主府社区居委会", 0, 8)]


def test_full_width_text_has_the_offsets_of_the_text_as_typed(matcher: LocationMatcher) -> None:
    full = "ＡＢＣ\u3000新城区公主府社区阳光花园小区３号楼门口有人遛狗不牵绳"
    half = "ABC 新城区公主府社区阳光花园小区3号楼门口有人遛狗不牵绳"
    assert len(full) == len(half)
    full_ents, half_ents = matcher.extract(full), matcher.extract(half)
    assert spans(full_ents) == spans(half_ents) == [
        ("district", "新城区", 4, 7),
        ("community", "公主府社区", 7, 12),
        ("place", "阳光花园小区", 12, 18),
    ]
    assert [full[e["start"]:e["end"]] for e in full_ents] == [e["text"] for e in full_ents]
    assert spans(matcher.extract("３号楼，新城区")) == [("district", "新城区", 4, 7)]


@pytest.mark.parametrize("text", ["我们小区门口有人乱扔垃圾", "小区里的路灯坏了", "马路上全是垃圾", "", "   ", "😀"])
def test_generic_words_are_not_places(matcher: LocationMatcher, text: str) -> None:
    assert matcher.extract(text) == []


def test_road_lamp_never_ends_a_road_name(matcher: LocationMatcher) -> None:
    ents = matcher.extract("新华大街和锡林南路交叉口路灯不亮")
    assert spans(ents) == [("place", "新华大街", 0, 4), ("place", "锡林南路", 5, 9)]


def test_building_a_second_matcher_does_not_change_segmentation(aliases: dict, matcher: LocationMatcher) -> None:
    # jieba is global: re-adding every name would inflate its frequency total and flip splits
    LocationMatcher(aliases)
    assert spans(matcher.extract("新华大街和锡林南路交叉口路灯不亮")) == [
        ("place", "新华大街", 0, 4), ("place", "锡林南路", 5, 9)]


def test_unknown_places_snap_to_token_boundaries() -> None:
    text = "和平小区门口"
    # 和平小区 ends on a boundary and keeps its 和
    assert unknown_places(text, [], {0, 2, 4, 6}) == [{"entity": "place", "value": "和平小区", "start": 0, "end": 4}]
    # no boundary after 小区: not a place
    assert unknown_places(text, [], {0, 2, 6}) == []
    # names the gazetteer already covers are left alone
    assert unknown_places(text, [range(0, 4)], {0, 2, 4, 6}) == []


# --- tokenizer -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dictionaries() -> None:
    from bot.reference.dictionaries import load_into_jieba

    load_into_jieba()


def tokens(text: str, masked=()) -> list[tuple[str, int, int]]:
    return [(t.text, t.start, t.end) for t in jieba_tokens(text, masked)]


def test_jieba_tokens_mask_places_as_one_token(dictionaries) -> None:
    toks = tokens(SENTENCE, [(0, 3), (3, 8), (8, 14)])
    assert toks[:3] == [(LOCATION_TOKEN, 0, 3), (LOCATION_TOKEN, 3, 8), (LOCATION_TOKEN, 8, 14)]
    assert LOCATION_TOKEN == "<loc>"
    rest = toks[3:]
    assert rest[0][1] == 14 and rest[-1][2] == len(SENTENCE)
    assert "".join(t for t, _s, _e in rest) == SENTENCE[14:]
    assert all(SENTENCE[s:e] == t for t, s, e in rest)


def test_jieba_tokens_drop_whitespace_and_keep_offsets(dictionaries) -> None:
    text = "我家 楼下\u3000有人"
    assert tokens(text) == [("我家", 0, 2), ("楼下", 3, 5), ("有人", 6, 8)]
    assert tokens("   ") == []
    assert tokens("") == []


def test_jieba_tokens_normalise_full_width(dictionaries) -> None:
    assert tokens("ＡＢＣ遛狗") == tokens("ABC遛狗")
    assert [t for t, _s, _e in tokens("遛狗不牵绳")] == ["遛狗", "不牵绳"]


def test_jieba_tokens_place_names_are_single_tokens(dictionaries) -> None:
    assert tokens("公主府社区有狗") == [("公主府社区", 0, 5), ("有", 5, 6), ("狗", 6, 7)]


def test_jieba_tokens_ignore_overlapping_and_out_of_range_masks(dictionaries) -> None:
    assert tokens("公主府社区有狗", [(0, 5), (2, 4), (20, 25)]) == [(LOCATION_TOKEN, 0, 5), ("有", 5, 6), ("狗", 6, 7)]


# --- classifier text ------------------------------------------------------------------------


def test_reading_text_masks_places_keeping_their_kind() -> None:
    assert reading_text("新城区公主府社区ＡＢＣ有狗", [(0, 3), (3, 8)]) == MASK_CHAR * 2 + "abc有狗"
    assert reading_text("内蒙古医院挂号难", [(0, 5)]) == MASK_CHAR + "医院挂号难"
    assert reading_text("ABC遛狗") == "abc遛狗"
    assert reading_text("") == ""
    assert reading_text(None) == ""
    assert reading_text("ab", [(0, 5)]) == "ab"  # a span beyond the text is ignored


def test_reading_text_masks_names_the_gazetteer_does_not_know() -> None:
    assert reading_text("关于金隅时代城小区电梯频繁故障的投诉") == "关于" + MASK_CHAR + "小区电梯频繁故障的投诉"
    assert reading_text("投诉万豪酒店后厨油烟直排居民楼") == "投诉" + MASK_CHAR + "酒店后厨油烟直排居民楼"
    assert reading_text("关于某小区电梯坏了") == "关于某小区电梯坏了"  # no name: nothing to mask
    assert reading_text("市政府门口有人摆摊") == "市政府门口有人摆摊"


def test_reading_text_numbers_become_one_digit() -> None:
    assert reading_text("我住3号楼2单元502 电话13912345678") == "我住9号楼9单元9 电话9"
    assert reading_text("12路公交车等了40分钟") == "9路公交车等了9分钟"


def test_reading_text_drops_courtesies_and_call_lead_in() -> None:
    letter = "关于频繁停电的反映\n尊敬的领导：您好！我们小区频繁停电。望有关部门高度重视。此致敬礼！"
    assert reading_text(letter) == "关于频繁停电的反映 我们小区频繁停电。"
    assert reading_text("市民来电反映：其小区停水") == "其小区停水"
    assert reading_text("您好") == "您好"  # only a greeting: kept, the classifier reads a greeting


def test_reading_words_are_jieba_words_of_the_reading() -> None:
    text, words = reading("路灯不亮")
    assert text == "路灯不亮" and "".join(words) == text and "路灯" in words


@pytest.mark.parametrize("text, place", [
    ("关于金隅时代城小区电梯频繁故障的投诉", "金隅时代城小区"),
    ("投诉万豪酒店后厨油烟直排居民楼 阳光花园小区的居民都受不了", "阳光花园小区"),
    ("举报青山路有人夜里偷倒建筑垃圾", "青山路"),
    ("反映锦绣家园小区停车难", "锦绣家园小区"),
    ("市民来电反映：其所在福泰花园小区暖气不热", "福泰花园小区"),
])
def test_a_preamble_is_not_part_of_the_place(matcher: LocationMatcher, text: str, place: str) -> None:
    places = [e["value"] for e in matcher.extract(text) if e["entity"] == "place"]
    assert places == [place]


@pytest.mark.parametrize("text", ["关于某小区电梯故障的投诉", "关于某路段路灯不亮的反映", "投诉某小区物业乱收费"])
def test_an_anonymised_place_is_no_place(matcher: LocationMatcher, text: str) -> None:
    assert [e for e in matcher.extract(text) if e["entity"] == "place"] == []


# --- outside test 15, P8: generic phrases are no place; a place after 不知道 is -----------------


@pytest.mark.parametrize("text", [
    "周边道路的路灯全坏了",
    "附近道路坑坑洼洼的",
    "周边市场都比这便宜",
    "我小区门口堆满垃圾",
    "其他小区都有人管",
])
def test_a_generic_phrase_is_no_place(matcher: LocationMatcher, text: str) -> None:
    assert matcher.extract(text) == []


def test_a_letter_naming_its_street_and_the_roads_around_it(matcher: LocationMatcher) -> None:
    text = "关于回民区光明路街道周边道路破损的反映 光明路与车站西街交汇处路面破损严重"
    assert [(e["entity"], e["text"]) for e in matcher.extract(text)] == [
        ("district", "回民区"), ("street", "光明路街道"), ("street", "光明路"), ("community", "车站西街")]


@pytest.mark.parametrize("text, expected", [
    ("我是赛罕区敕勒川路街道某小区的业主，现就我小区物业公司乱收费问题反映", ["赛罕区", "敕勒川路街道"]),
    ("赛罕区昭乌达南路街道东瓦窑社区居委会农贸市场蔬菜价格明显高于周边市场",
     ["赛罕区", "昭乌达南路街道", "东瓦窑社区居委会", "农贸市场"]),
])
def test_fragments_of_the_complaint_are_not_places(matcher: LocationMatcher, text: str, expected: list) -> None:
    assert [e["text"] for e in matcher.extract(text)] == expected


def test_a_compound_after_dont_know_is_a_place(matcher: LocationMatcher) -> None:
    assert spans(matcher.extract("不知道 就是毛纺厂家属院")) == [("place", "毛纺厂家属院", 6, 12)]


@pytest.mark.parametrize("text", ["金桥开发区", "如意开发区", "大召寺", "海亮广场", "新华广场", "不知道 就是毛纺厂家属院"])
def test_p8_places_are_whole_jieba_tokens(matcher: LocationMatcher, dictionaries, text: str) -> None:
    ents = matcher.extract(text)
    assert ents
    bounds = {t.start for t in jieba_tokens(text)} | {t.end for t in jieba_tokens(text)}
    assert all(e["start"] in bounds and e["end"] in bounds for e in ents)
