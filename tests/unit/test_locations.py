"""bot/reference/locations.py: LocationResolver against the real gazetteer."""

from __future__ import annotations

import pytest

from bot.reference.gazetteer import default_gazetteer
from bot.reference.locations import (
    AMBIGUOUS,
    NONE,
    RESOLVED,
    UNRESOLVED,
    LocationResolver,
    Mention,
    building_text,
    mentions_from_entities,
)


@pytest.fixture(scope="module")
def resolver() -> LocationResolver:
    return LocationResolver(default_gazetteer())


def m(level: str, name: str) -> Mention:
    return Mention(name, level, name)


def codes(res) -> tuple:
    return res.status, res.district_code, res.street_code, res.community_code


def test_unique_community_resolves_with_street_and_district(resolver: LocationResolver) -> None:
    res = resolver.resolve([m("community", "公主府社区")])
    assert codes(res) == (RESOLVED, "150102", "150102001", "150102001001")
    assert res.place.code == "150102001001"
    assert res.mention_text == "公主府社区"
    assert res.known_street is True
    assert resolver.label(res) == "新城区 海拉尔东路街道 公主府社区居委会"
    assert res.as_json() == {
        "status": "resolved", "district_code": "150102", "street_code": "150102001",
        "community_code": "150102001001", "candidates": [],
    }


def test_ambiguous_community_lists_candidates(resolver: LocationResolver) -> None:
    res = resolver.resolve([m("community", "锦绣社区")])
    assert res.status == AMBIGUOUS
    assert [c.code for c in res.candidates] == ["150102007003", "150105006034"]
    assert codes(res) == (AMBIGUOUS, None, None, None)
    assert res.place is None
    assert res.known_street is False
    assert resolver.label(res) == "锦绣社区"
    assert [resolver.choice_label(c) for c in res.candidates] == [
        "新城区 迎新路街道 锦绣社区居委会", "赛罕区 昭乌达南路街道 锦绣社区居委会"]


@pytest.mark.parametrize(
    ("district", "expected"),
    [
        ("新城区", ("150102", "150102007", "150102007003")),
        ("赛罕区", ("150105", "150105006", "150105006034")),
    ],
)
def test_ambiguous_community_narrowed_by_district(resolver: LocationResolver, district: str, expected) -> None:
    res = resolver.resolve([m("district", district), m("community", "锦绣社区")])
    assert codes(res) == (RESOLVED, *expected)
    assert res.mention_text == "锦绣社区"


@pytest.mark.parametrize(
    ("street", "community_code"),
    [("迎新路街道", "150102007003"), ("昭乌达南路街道", "150105006034")],
)
def test_ambiguous_community_narrowed_by_street(resolver: LocationResolver, street: str, community_code: str) -> None:
    res = resolver.resolve([m("street", street), m("community", "锦绣社区")])
    assert res.status == RESOLVED
    assert res.community_code == community_code
    assert res.street_code == community_code[:9]


def test_street_of_another_district_does_not_narrow(resolver: LocationResolver) -> None:
    # 海拉尔东路街道 has no 锦绣社区: the mention cannot choose, so both remain
    res = resolver.resolve([m("street", "海拉尔东路街道"), m("community", "锦绣社区")])
    assert res.status == AMBIGUOUS
    assert [c.code for c in res.candidates] == ["150102007003", "150105006034"]


def test_street_alone(resolver: LocationResolver) -> None:
    res = resolver.resolve([m("street", "乌兰察布东大街")])
    assert codes(res) == (RESOLVED, "150105", "150105003", None)
    assert res.place.level == "street"
    assert resolver.label(res) == "赛罕区 乌兰察布东路街道"


def test_city_level_street_name_is_ambiguous_alone(resolver: LocationResolver) -> None:
    res = resolver.resolve([m("street", "城关镇")])
    assert res.status == AMBIGUOUS
    assert [c.code for c in res.candidates] == ["150123100", "150124100"]


def test_city_level_street_with_district(resolver: LocationResolver) -> None:
    res = resolver.resolve([m("district", "清水河"), m("street", "城关镇")])
    assert codes(res) == (RESOLVED, "150124", "150124100", None)
    assert resolver.label(res) == "清水河县 城关镇"
    res = resolver.resolve([m("district", "和林"), m("street", "城关镇")])
    assert codes(res) == (RESOLVED, "150123", "150123100", None)


def test_district_only_resolves_without_street(resolver: LocationResolver) -> None:
    res = resolver.resolve([m("district", "新城区")])
    assert codes(res) == (RESOLVED, "150102", None, None)
    assert res.known_street is False
    assert resolver.label(res) == "新城区"


def test_mapped_place_gives_district_only(resolver: LocationResolver) -> None:
    res = resolver.resolve([m("place", "满都海公园")])
    assert codes(res) == (RESOLVED, "150105", None, None)
    assert res.place.code == "place:满都海公园"
    assert resolver.label(res) == "赛罕区 满都海公园"
    # an alias of the row resolves the same way
    assert codes(resolver.resolve([m("place", "满都海")])) == (RESOLVED, "150105", None, None)


def test_community_beats_a_mapped_place(resolver: LocationResolver) -> None:
    res = resolver.resolve([m("place", "大召寺"), m("community", "公主府社区")])
    assert res.community_code == "150102001001"


def test_unknown_place_is_unresolved(resolver: LocationResolver) -> None:
    res = resolver.resolve([m("place", "阳光花园小区")])
    assert codes(res) == (UNRESOLVED, None, None, None)
    assert res.mention_text == "阳光花园小区"
    assert resolver.label(res) == "阳光花园小区"


def test_unknown_names_are_joined_in_the_mention_text(resolver: LocationResolver) -> None:
    res = resolver.resolve([m("place", "阳光花园小区"), m("community", "不存在社区")])
    assert res.status == UNRESOLVED
    assert res.mention_text == "阳光花园小区 不存在社区"


def test_no_mentions(resolver: LocationResolver) -> None:
    res = resolver.resolve([])
    assert codes(res) == (NONE, None, None, None)
    assert res.candidates == []


def test_button_code_resolves(resolver: LocationResolver) -> None:
    mention = Mention.from_entity({"entity": "community", "value": "150105006034"})
    assert mention.value == "150105006034"
    assert mention.text == "锦绣社区居委会"  # the name, not the code, is shown
    res = resolver.resolve([mention])
    assert codes(res) == (RESOLVED, "150105", "150105006", "150105006034")


@pytest.mark.parametrize(
    ("level", "code", "expected"),
    [
        ("street", "150124100", (RESOLVED, "150124", "150124100", None)),
        ("district", "150102", (RESOLVED, "150102", None, None)),
        ("community", "150105006999", (UNRESOLVED, None, None, None)),  # unknown code
        # a street's code under the wrong level: found through its name, still that street
        ("community", "150105006", (RESOLVED, "150105", "150105006", None)),
    ],
)
def test_button_codes_by_level(resolver: LocationResolver, level: str, code: str, expected) -> None:
    res = resolver.resolve([Mention.from_entity({"entity": level, "value": code})])
    assert codes(res) == expected


def test_mention_from_entity() -> None:
    ent = {"entity": "community", "value": "公主府社区", "text": "公主府社区居委会", "start": 3, "end": 11}
    assert Mention.from_entity(ent) == Mention("公主府社区居委会", "community", "公主府社区", 3, 11)
    assert Mention.from_entity({"entity": "phone", "value": "13812345678"}) is None
    assert mentions_from_entities([ent, {"entity": "photo", "value": "x"}]) == [
        Mention("公主府社区居委会", "community", "公主府社区", 3, 11)]
    assert mentions_from_entities(None) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("阳光花园3号楼2单元501室门口", "3号楼2单元501室"),
        ("5 栋 门口，还有12幢", "5栋 12幢"),
        ("3号楼 2 单元", "3号楼2单元"),
        ("没有楼号", ""),
        ("3号院门口", ""),
    ],
)
def test_building_text(text: str, expected: str) -> None:
    assert building_text(text) == expected


# --- issue 13 item 8: the named street and the compound's street disagree -------------------


def test_a_named_street_and_a_compound_of_another_street_conflict(resolver: LocationResolver) -> None:
    res = resolver.resolve([m("street", "大学西路街道"), m("community", "金宇文苑")])
    assert res.status == "conflict" and (res.street_code, res.community_code) == (None, None)
    assert [c.code for c in res.candidates] == ["150105002", "150105004021"]  # named street, then the compound


def test_a_compound_in_the_named_street_resolves_without_asking(resolver: LocationResolver) -> None:
    res = resolver.resolve([m("street", "大学东路街道"), m("community", "金宇文苑")])
    assert codes(res) == ("resolved", "150105", "150105004", "150105004021")


# --- outside test 15, P8: zones and landmarks; a road named like a community ---------------


@pytest.mark.parametrize("name, expected", [
    ("金桥开发区", ("resolved", "150105", None, None)),  # 赛罕区: known only to its district
    ("如意开发区", ("resolved", "150172", "150172401", None)),  # 经开区 如意工业园区
    ("大召寺", ("resolved", "150104", "150104003", None)),  # 玉泉区 长和廊街道
    ("海亮广场", ("resolved", "150103", "150103002", None)),  # 回民区 中山西路街道
    ("新华广场", ("resolved", "150102", None, None)),  # 新城区; its street is not certain
])
def test_zones_and_landmarks_resolve(resolver: LocationResolver, name: str, expected: tuple) -> None:
    assert codes(resolver.resolve([m("place", name)])) == expected


def test_a_road_named_like_a_community_does_not_contradict_the_named_street(resolver: LocationResolver) -> None:
    # 光明路与车站西街交汇处: the road 车站西街, not 锡林北路街道's 车站西街社区
    res = resolver.resolve([m("district", "回民区"), m("street", "光明路街道"), m("street", "光明路"),
                            m("community", "车站西街")])
    assert codes(res) == ("resolved", "150103", "150103003", None)
    # the community, named as one, still does
    res = resolver.resolve([m("street", "光明路街道"), m("community", "车站西街社区")])
    assert res.status == "conflict" and [c.code for c in res.candidates] == ["150103003", "150102002001"]
