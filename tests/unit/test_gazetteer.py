"""bot/reference/gazetteer.py against the real data in data/gazetteer and data/locations/places.csv."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bot.reference.gazetteer import GAZETTEER_DIR, PLACES_CSV, Gazetteer, default_gazetteer, read_places_csv


@pytest.fixture(scope="module")
def g() -> Gazetteer:
    return Gazetteer.load()


def codes(g: Gazetteer, alias: str) -> list:
    return [(p.code, p.level) for p in g.candidates(alias)]


def test_counts_per_level(g: Gazetteer) -> None:
    levels = Counter(p.level for p in g.places.values())
    assert levels["district"] == 10
    assert levels["street"] == 99
    assert levels["community"] == 1396
    # one place per data row of places.csv (6 today; admins add more)
    assert levels["place"] == len(read_places_csv(PLACES_CSV)) >= 6


def test_default_gazetteer_is_cached_and_complete() -> None:
    assert default_gazetteer() is default_gazetteer()
    assert len(default_gazetteer().places) == 10 + 99 + 1396 + len(read_places_csv(PLACES_CSV))


def test_places_carry_their_codes(g: Gazetteer) -> None:
    p = g.get("150102001001")
    assert (p.name, p.level, p.district_code, p.street_code, p.community_code) == (
        "公主府社区居委会", "community", "150102", "150102001", "150102001001")
    s = g.get("150105003")
    assert (s.name, s.level, s.district_code, s.street_code, s.community_code) == (
        "乌兰察布东路街道", "street", "150105", "150105003", None)
    d = g.get("150102")
    assert (d.name, d.level, d.district_code, d.street_code) == ("新城区", "district", "150102", None)
    assert g.get(None) is None
    assert g.get("999999") is None


@pytest.mark.parametrize("alias", ["公主府社区居委会", "公主府社区", "公主府"])
def test_community_suffix_dropped_aliases(g: Gazetteer, alias: str) -> None:
    assert codes(g, alias) == [("150102001001", "community")]


@pytest.mark.parametrize("alias", ["杨家堡村委会", "杨家堡村"])
def test_village_committee_aliases(g: Gazetteer, alias: str) -> None:
    assert codes(g, alias) == [("150121101222", "community")]


@pytest.mark.parametrize("alias", ["乌兰察布东路街道", "乌兰察布东路", "乌兰察布东大街街道", "乌兰察布东大街", "乌兰察布东街"])
def test_street_aliases(g: Gazetteer, alias: str) -> None:
    assert codes(g, alias) == [("150105003", "street")]


@pytest.mark.parametrize(
    ("alias", "code"),
    [
        ("土左旗", "150121"),
        ("土左", "150121"),
        ("土默特左旗", "150121"),
        ("托县", "150122"),
        ("托克托县", "150122"),
        ("和林", "150123"),
        ("和林县", "150123"),
        ("清水河", "150124"),
        ("武川", "150125"),
        ("经开区", "150172"),
        ("新城区", "150102"),
    ],
)
def test_district_names_and_short_forms(g: Gazetteer, alias: str, code: str) -> None:
    assert codes(g, alias) == [(code, "district")]


def test_name_shared_by_levels_resolves_to_the_higher_level(g: Gazetteer) -> None:
    # 中山西路社区居委会 (150103002014) would also be called 中山西路, which is a street.
    assert codes(g, "中山西路") == [("150103002", "street")]
    assert codes(g, "中山西路社区") == [("150103002014", "community")]
    # 人民路社区 (土左旗) vs 人民路街道 (赛罕区)
    assert codes(g, "人民路") == [("150105001", "street")]
    assert codes(g, "人民路社区") == [("150121100004", "community")]


def test_ambiguous_names_keep_every_candidate(g: Gazetteer) -> None:
    assert codes(g, "锦绣社区") == [("150102007003", "community"), ("150105006034", "community")]
    assert codes(g, "城关镇") == [("150123100", "street"), ("150124100", "street")]
    # 乡/镇 mix-up alias shares the ambiguity
    assert codes(g, "城关乡") == [("150123100", "street"), ("150124100", "street")]


def test_two_character_bare_names_are_not_aliases(g: Gazetteer) -> None:
    # 锦绣社区 → bare 锦绣 is an ordinary word
    assert g.candidates("锦绣") == []
    # 镇村民委员会 (托县, two of them) → 镇村 would match any "…镇村…"
    assert "镇村" not in g.aliases
    assert codes(g, "镇村民委员会") == [("150122101200", "community"), ("150122102200", "community")]


def test_places_csv_rows_and_aliases(g: Gazetteer) -> None:
    p = g.get("place:大召寺")
    assert (p.name, p.level, p.district_code, p.street_code, p.community_code) == (
        "大召寺", "place", "150104", "150104003", None)  # 长和廊街道 (outside test 15, P8)
    assert codes(g, "大召寺") == [("place:大召寺", "place")]
    assert codes(g, "大召广场") == [("place:大召寺", "place")]
    assert codes(g, "博物院") == [("place:内蒙古博物院", "place")]
    assert codes(g, "满都海") == [("place:满都海公园", "place")]


def test_two_letter_aliases_from_places_csv_are_not_added(g: Gazetteer) -> None:
    # places.csv lists 大召 as an alias of 大召寺: too short, it hits ordinary text
    assert "大召" not in g.aliases
    assert g.candidates("大召") == []


def test_read_places_csv_filters_short_aliases_and_comments(tmp_path: Path) -> None:
    csv_path = tmp_path / "places.csv"
    csv_path.write_text(
        "# comment line\n"
        "name,aliases,district_code,street_code,community_code,note\n"
        "阳光花园小区,阳光|阳光花园|门口,150102,150102001,,\n"
        ",,150102,,,empty name is skipped\n"
        "某公园,,,,,\n",
        encoding="utf-8",
    )
    rows = read_places_csv(csv_path)
    assert [(p.code, p.district_code, p.street_code, p.community_code, names) for p, names in rows] == [
        ("place:阳光花园小区", "150102", "150102001", None, ["阳光花园小区", "阳光花园"]),
        ("place:某公园", None, None, None, ["某公园"]),
    ]
    g = Gazetteer.load(GAZETTEER_DIR, csv_path)
    assert codes(g, "阳光花园") == [("place:阳光花园小区", "place")]
    assert "阳光" not in g.aliases and "门口" not in g.aliases


def test_load_without_places_csv(tmp_path: Path) -> None:
    g = Gazetteer.load(GAZETTEER_DIR, None)
    assert not any(p.level == "place" for p in g.places.values())
    assert "大召寺" not in g.aliases
    assert Gazetteer.load(GAZETTEER_DIR, tmp_path / "missing.csv").candidates("大召寺") == []


def test_find_longest_match(g: Gazetteer) -> None:
    assert g.find("新城区公主府社区居委会门口") == [(0, 3, "新城区"), (3, 11, "公主府社区居委会")]
    assert g.find("赛罕区乌兰察布东大街街道锦绣社区") == [
        (0, 3, "赛罕区"), (3, 12, "乌兰察布东大街街道"), (12, 16, "锦绣社区")]
    assert g.find("土默特左旗杨家堡村委会") == [(0, 5, "土默特左旗"), (5, 11, "杨家堡村委会")]
    assert g.find("我在大召寺旁边") == [(2, 5, "大召寺")]
    assert g.find("去大召看看") == []
    assert g.find("没有地名的句子") == []


def test_name_of_and_describe(g: Gazetteer) -> None:
    assert g.name_of("150105003") == "乌兰察布东路街道"
    assert g.name_of(None) == ""
    assert g.name_of("999") == ""
    assert g.describe(g.get("150102001001")) == "新城区 海拉尔东路街道 公主府社区居委会"
    assert g.describe(g.get("150102001")) == "新城区 海拉尔东路街道"
    assert g.describe(g.get("150102")) == "新城区"
    assert g.describe(g.get("place:大召寺")) == "玉泉区 长和廊街道 大召寺"
    assert g.describe(g.get("place:满都海公园")) == "赛罕区 满都海公园"
