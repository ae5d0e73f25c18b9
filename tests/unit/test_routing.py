"""bot/reference/routing.py: the routing catalogue (data/routing/catalogue.yml) and Router.route."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.domain.model import CATEGORIES, DispatchClass
from bot.reference.gazetteer import default_gazetteer
from bot.reference.locations import LocationResolver, Mention, Resolution
from bot.reference.routing import (
    DISPATCH_CENTER,
    CatalogueError,
    Router,
    RoutingCatalogue,
    default_catalogue,
    default_router,
    street_queue,
)

GONGZHUFU = "150102001001"  # 公主府社区, 海拉尔东路街道 150102001, 新城区 150102


@pytest.fixture(scope="module")
def catalogue() -> RoutingCatalogue:
    return RoutingCatalogue.load()


@pytest.fixture(scope="module")
def router(catalogue: RoutingCatalogue) -> Router:
    return Router(catalogue, default_gazetteer())


@pytest.fixture(scope="module")
def resolver() -> LocationResolver:
    return LocationResolver(default_gazetteer())


@pytest.fixture(scope="module")
def at_gongzhufu(resolver: LocationResolver) -> Resolution:
    res = resolver.resolve([Mention("公主府社区", "community", "公主府社区")])
    assert res.community_code == GONGZHUFU
    return res


# --- the catalogue ----------------------------------------------------------------


def test_catalogue_covers_every_category(catalogue: RoutingCatalogue) -> None:
    assert set(catalogue.categories) == set(CATEGORIES)
    for code, rule in catalogue.categories.items():
        assert rule.code == code
        assert rule.name == CATEGORIES[code]


def test_every_unit_is_a_department(catalogue: RoutingCatalogue) -> None:
    for rule in catalogue.categories.values():
        for unit in (rule.lead, *rule.co):
            assert unit in catalogue.departments, (rule.code, unit)
    assert catalogue.departments[DISPATCH_CENTER] == "12345派单中心"


def test_default_catalogue_and_router_are_cached() -> None:
    assert default_catalogue() is default_catalogue()
    assert default_router() is default_router()
    assert default_router().catalogue is default_catalogue()


@pytest.mark.parametrize(
    ("category", "lead", "co", "dispatch_class"),
    [
        ("dog", "police_dog", ("urban_management",), DispatchClass.NORMAL),
        ("illegal_ads", "urban_management", (), DispatchClass.NORMAL),
        ("drainage", "drainage_authority", ("urban_management",), DispatchClass.NORMAL),
        ("sanitation", "sanitation_authority", ("urban_management",), DispatchClass.NORMAL),
        ("heating", "heating_authority", (), DispatchClass.UTILITIES),
        ("water_supply", "water_authority", (), DispatchClass.UTILITIES),
        ("street_order", "urban_management", ("traffic_police",), DispatchClass.NORMAL),
        ("noise", "ecology_environment", ("police_station",), DispatchClass.NORMAL),
        ("roads_lighting", "municipal_facilities", (), DispatchClass.NORMAL),
        ("property", "housing_authority", (), DispatchClass.NORMAL),
        ("market", "market_regulation", (), DispatchClass.NORMAL),
        ("other", "dispatch_center", (), DispatchClass.NORMAL),
    ],
)
def test_route_with_resolved_street(router: Router, at_gongzhufu: Resolution, category, lead, co, dispatch_class) -> None:
    route = router.route(category, at_gongzhufu, "")
    assert route.lead == lead
    assert route.co == (*co, "street:150102001")
    assert route.dispatch_class is dispatch_class
    assert (route.district_code, route.street_code, route.community_code) == ("150102", "150102001", GONGZHUFU)


def test_street_queue() -> None:
    assert street_queue("150102001") == "street:150102001"


def test_reason_names_the_units_in_chinese(router: Router, at_gongzhufu: Resolution) -> None:
    route = router.route("dog", at_gongzhufu, "楼下有人遛狗不牵绳")
    assert route.reason == "类别 文明养犬；主办 市公安局养犬管理；属地 海拉尔东路街道（新城区）；时限 一般 签收1个工作日，办结5个工作日"


def test_unit_name(catalogue: RoutingCatalogue) -> None:
    assert catalogue.unit_name("police_dog") == "市公安局养犬管理"
    assert catalogue.unit_name("street:150102001") == "海拉尔东路街道"
    assert catalogue.unit_name("street:999") == "street:999"
    assert catalogue.unit_name("nobody") == "nobody"


@pytest.mark.parametrize(
    ("category", "text", "dispatch_class", "keyword"),
    [
        ("drainage", "污水漫到路上", DispatchClass.UTILITIES, "漫"),
        ("drainage", "下水道堵了", DispatchClass.NORMAL, None),
        ("roads_lighting", "井盖丢了", DispatchClass.URGENT, "井盖丢"),
        ("roads_lighting", "路灯不亮", DispatchClass.NORMAL, None),
        ("street_order", "消防通道被车堵死了", DispatchClass.URGENT, "消防通道"),
        ("street_order", "门口占道摆摊", DispatchClass.NORMAL, None),
        # the city-wide safety words apply to every category
        ("sanitation", "垃圾没人清运，旁边井盖丢了", DispatchClass.URGENT, "井盖丢"),
        ("heating", "暖气管漏电了", DispatchClass.URGENT, "漏电"),
        # an escalation never lowers a class: heating is already utilities
        ("heating", "暖气不热", DispatchClass.UTILITIES, None),
        ("dog", "狗把污水漫到路上了", DispatchClass.NORMAL, None),  # 漫 escalates drainage only
    ],
)
def test_dispatch_class_and_keyword(catalogue: RoutingCatalogue, category, text, dispatch_class, keyword) -> None:
    assert catalogue.dispatch_class_for(category, text) == (dispatch_class, keyword)


def test_escalation_is_in_route_and_reason(router: Router, at_gongzhufu: Resolution) -> None:
    route = router.route("drainage", at_gongzhufu, "污水漫到路上")
    assert route.dispatch_class is DispatchClass.UTILITIES
    assert route.reason.endswith("时限 公用事业 签收2小时，办结48小时（关键词“漫”）")
    route = router.route("roads_lighting", at_gongzhufu, "井盖丢了")
    assert route.dispatch_class is DispatchClass.URGENT
    assert route.reason.endswith("时限 紧急 签收1小时，办结24小时（关键词“井盖丢”）")


@pytest.mark.parametrize(
    ("mentions", "where", "district"),
    [
        ([Mention("锦绣社区", "community", "锦绣社区")], "地点“锦绣社区”有多个同名单位", None),
        ([Mention("阳光花园小区", "place", "阳光花园小区")], "地点“阳光花园小区”未能对应到街道", None),
        ([Mention("新城区", "district", "新城区")], "仅知新城区，街道未确定", "150102"),
        ([Mention("满都海公园", "place", "满都海公园")], "仅知赛罕区，街道未确定", "150105"),
        ([], "未提供地点", None),
    ],
)
def test_without_a_street_the_dispatch_center_routes(router: Router, resolver: LocationResolver, mentions, where, district) -> None:
    route = router.route("dog", resolver.resolve(mentions), "楼下有人遛狗不牵绳")
    assert route.lead == DISPATCH_CENTER
    assert route.co == ()
    assert route.street_code is None and route.community_code is None
    assert route.district_code == district
    assert route.dispatch_class is DispatchClass.NORMAL
    assert route.reason == f"类别 文明养犬；{where}，转派单中心人工派单（建议主办 市公安局养犬管理）；时限 一般 签收1个工作日，办结5个工作日"
    assert "派单中心" in route.reason


# --- catalogue validation ---------------------------------------------------------

_DEPARTMENTS = "departments:\n  dispatch_center: 12345派单中心\n  city: 某局\n"


_CLASSES = """dispatch_classes:
  urgent: {hours: 1, 签收: {hours: 1}, 办结: {hours: 24}}
  utilities: {hours: 2, 签收: {hours: 2}, 办结: {hours: 48}}
  normal: {hours: 24, 签收: {working_days: 1}, 办结: {working_days: 5}}"""


def _catalogue_yaml(categories: dict, departments: str = _DEPARTMENTS) -> str:
    lines = [departments, _CLASSES, "categories:"]
    for code, (lead, co) in categories.items():
        lines.append(f"  {code}: {{lead: {lead}, co: [{', '.join(co)}]}}")
    return "\n".join(lines) + "\n"


def _all_categories(**override) -> dict:
    cats = {code: ("city", []) for code in CATEGORIES}
    cats.update(override)
    return cats


def test_minimal_valid_catalogue_loads(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.yml"
    path.write_text(_catalogue_yaml(_all_categories(dog=("city", ["dispatch_center"]))), encoding="utf-8")
    cat = RoutingCatalogue.load(path)
    assert cat.categories["dog"].lead == "city"
    assert cat.categories["dog"].co == ("dispatch_center",)
    assert cat.categories["dog"].name == "文明养犬"  # the model's name when the file gives none
    assert cat.categories["dog"].dispatch_class is DispatchClass.NORMAL
    assert cat.urgent_keywords == ()


def test_unknown_category_code_raises(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.yml"
    path.write_text(_catalogue_yaml(_all_categories(dogs=("city", []))), encoding="utf-8")
    with pytest.raises(CatalogueError, match="unknown category code 'dogs'"):
        RoutingCatalogue.load(path)


@pytest.mark.parametrize("override", [("nobody", []), ("city", ["nobody"])])
def test_undefined_unit_raises(tmp_path: Path, override) -> None:
    path = tmp_path / "catalogue.yml"
    path.write_text(_catalogue_yaml(_all_categories(noise=override)), encoding="utf-8")
    with pytest.raises(CatalogueError, match="category noise: unit 'nobody' is not in departments"):
        RoutingCatalogue.load(path)


def test_missing_category_raises(tmp_path: Path) -> None:
    cats = _all_categories()
    del cats["market"]
    path = tmp_path / "catalogue.yml"
    path.write_text(_catalogue_yaml(cats), encoding="utf-8")
    with pytest.raises(CatalogueError, match="categories without a route: \\['market'\\]"):
        RoutingCatalogue.load(path)


def test_missing_dispatch_center_raises(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.yml"
    path.write_text(_catalogue_yaml(_all_categories(), departments="departments:\n  city: 某局\n"), encoding="utf-8")
    with pytest.raises(CatalogueError, match="dispatch_center"):
        RoutingCatalogue.load(path)


def test_a_location_the_conversation_knows_only_to_its_district_keeps_the_district(router: Router) -> None:
    # the form's status for "新城区 + an unknown compound" is partial (issue 13 item 7)
    partial = Resolution("partial", district_code="150102", mention_text="新城区 幸福家园小区")
    route = router.route("sanitation", partial, "门口垃圾没人清理")
    assert (route.lead, route.district_code, route.street_code) == (DISPATCH_CENTER, "150102", None)
    assert "仅知新城区，街道未确定" in route.reason
    # nothing else carries a district it did not resolve
    stale = Resolution("unresolved", district_code="150102", mention_text="某处")
    assert router.route("sanitation", stale, "").district_code is None
