"""The emergency evidence detector (bot.nlu.emergency): danger now counts in any register,
alarming words, fears, past events and other categories' injuries do not."""
from __future__ import annotations

import pytest

from bot.nlu.emergency import EMERGENCY, decide, evidence

DANGER_NOW = [
    "市民来电反映：小黑河边有一名老人落水，请求立即救援",
    "快来人 楼下饭店着火了 烟特别大",
    "电梯卡在8楼和9楼中间了 我和孩子在里面出不去",
    "楼道里一股子煤气味 我不敢开灯",
    "来电人称：其家中闻到很浓的燃气味，怀疑燃气泄漏",
    "两伙人在烧烤摊打起来了 还动了刀",
    "同志你快点 我家老头子摔倒了 头上流了好多血 叫也叫不醒",
    "超市停车场有个孩子被锁车里了 车主不在",
    "路边一根电线断了在冒火花 旁边人来人往",
    "有个小孩掉冰窟窿里了",
    "我被困在电梯里了",
    "他站在楼顶说要跳楼",
    "电梯里关着人呢 喊了半天没人应",
    "闻到一股煤气 越来越浓",
    "有人在河里扑腾 快不行了",
    "市民来电反映：某超市门口一男子拿着砍刀追人，请求警方立即处置。",
    "老伴突然倒了 口吐白沫 叫他也没反应",
]
NOT_NOW = [
    "商场门口有人发传单，拉着人不放",
    "井盖没了 万一有人掉下去怎么办",
    "楼道里堆满了纸箱 万一着火了怎么办",
    "楼上天天半夜剁东西 吓死人了",
    "马路上那个坑要出人命了",
    "上周有人在这摔伤了 到现在也没人修",
    "燃气卡充了钱插表里没反应",
    "新房入住半年燃气仍未通气",
    "我的车被堵在车位里出不去",
    "一直被噪音困扰 睡不着",
    "在工地上受伤了 老板不给算工伤",
    "狗把孩子咬流血了 狗主人不管",
    "电梯天天坏 经常有人被困",
    "消防通道被杂物堵死了",
    "水管炸了 家里全是水",
    "请问家里着火了应该找哪个部门",
    "火已经扑灭了 没有人受伤",
    "请问燃气报警器在哪里买",
    "楼下夫妻天天打架 吵得睡不着",
    "水压太小了 热水器都打不着火",
    "电梯关人了 被困了半个小时物业才来",
]


@pytest.mark.parametrize("text", DANGER_NOW)
def test_danger_now_is_strong_evidence(text: str) -> None:
    assert evidence(text)[0] is not None


@pytest.mark.parametrize("text", NOT_NOW)
def test_alarming_words_fears_and_the_past_are_not(text: str) -> None:
    assert evidence(text)[0] is None


def ranking(*pairs):
    return [{"name": n, "confidence": c} for n, c in pairs]


def test_strong_evidence_makes_it_an_emergency_whatever_the_classifier_said() -> None:
    out = decide("市民来电反映：小黑河边有一名老人落水，请求立即救援", ranking(("other", 0.6), ("emergency", 0.2), ("inform", 0.2)))
    assert out[0]["name"] == EMERGENCY and out[0]["confidence"] >= 0.9
    assert [r["name"] for r in out[1:]] == ["other", "inform"]


def test_a_fear_takes_a_classifier_emergency_out_of_first_place() -> None:
    out = decide("楼道里堆满了纸箱 万一着火了怎么办", ranking(("emergency", 0.46), ("street_order", 0.4), ("other", 0.14)))
    assert out[0]["name"] == "street_order"
    assert out[0]["confidence"] == pytest.approx(0.4 / 0.54)
    assert out[-1] == {"name": EMERGENCY, "confidence": 0.0}


def test_the_classifier_alone_can_say_emergency_and_the_fallback_never_hides_it() -> None:
    out = decide("隔壁屋里有人在喊 一直砸门 听着像出大事了", ranking(("emergency", 0.28), ("noise", 0.27), ("other", 0.2)))
    assert out[0] == {"name": EMERGENCY, "confidence": 0.9}
    assert [r["name"] for r in out] == [EMERGENCY, "noise", "other"]


def test_a_strong_sign_in_a_message_wholly_about_something_else_is_not_enough() -> None:
    text = "下水道堵了 师傅拿着刀刮了半天也没通"
    assert evidence(text)[0] is not None
    assert decide(text, ranking(("drainage", 0.97), ("emergency", 0.01)))[0]["name"] == "drainage"
    assert decide(text, ranking(("drainage", 0.8), ("emergency", 0.1)))[0]["name"] == EMERGENCY


def test_weak_evidence_needs_the_classifier_to_lean_that_way() -> None:
    assert decide("厂子烟囱冒黑烟", ranking(("ecology", 0.9), ("emergency", 0.05)))[0]["name"] == "ecology"
    assert decide("邻居家门缝往外冒烟 敲门没人应", ranking(("other", 0.5), ("emergency", 0.4)))[0]["name"] == EMERGENCY
    assert decide("邻居家门缝往外冒烟 敲门没人应", ranking(("other", 0.8), ("emergency", 0.2)))[0]["name"] == "other"


def test_ordinary_rankings_pass_through() -> None:
    r = ranking(("heating", 0.9), ("other", 0.1))
    assert decide("暖气不热", r) == r
    assert decide("暖气不热", []) == []


# rules added in round two: calm and elderly phrasings of danger now
@pytest.mark.parametrize("text", [
    "来电人称其母亲被困电梯内，请求尽快处置",
    "市民来电反映：一名儿童掉进了路边没有盖子的污水井里",
    "市民来电反映：有一男子倒在路边，呼之不应",
    "同志我跟你说 我家老伴 在卫生间摔倒了 起不来了",
    "来电人称其父亲在家中突然昏倒",
    "路口电线杆上的电线一直在噼啪打火花",
    "有个小孩摸到了垂下来的电线",
])
def test_round_two_danger_now(text: str) -> None:
    assert evidence(text)[0] is not None


@pytest.mark.parametrize("text", [
    "小区门口电线耷拉下来好几天了 供电局也不来修",
    "路边电线断了垂在树上 一直没人管",
    "有人把装修垃圾倒在路边",
    "煤气罐没气了 送气的一直不来",
    "同志我跟你说 去年冬天 我老伴摔倒了 起不来",
])
def test_round_two_not_now(text: str) -> None:
    strong, weak = evidence(text)
    assert strong is None and weak is None


@pytest.mark.parametrize("text", [
    "路口井盖没了 刚才有个孩子掉下去了",
    "同志 电梯停了 我老伴还在电梯里头",
    "电梯卡住不动了 里面还有人",
    "我敲了半天门 喊她也不应",
    "从昨晚到现在屋里一直有煤气味",
])
def test_round_two_fell_in_still_inside_no_answer(text: str) -> None:
    assert evidence(text)[0] is not None


@pytest.mark.parametrize("text", [
    "昨天晚上电线冒火花 今天就停电了",
    "前两天有人掉下去了 到今天井盖还没补上",
    "孩子差点掉下去了 井盖到现在也没人补",
])
def test_round_two_yesterday_and_near_misses_are_not_now(text: str) -> None:
    assert evidence(text)[0] is None


def test_fear_alone_does_not_take_a_sure_classifier_emergency_away() -> None:
    text = "同志我害怕得很 隔壁屋里一直有人在喊 砸门 听着像出大事了"
    assert decide(text, ranking(("emergency", 0.3), ("noise", 0.27)))[0]["name"] == EMERGENCY
    assert decide("万一出事了 隔壁一直有人在喊", ranking(("emergency", 0.3), ("noise", 0.27)))[0]["name"] == "noise"


def test_a_car_that_cannot_get_out_is_not_a_person_trapped() -> None:
    assert evidence("车库卷帘门坏了 车进不去出不来") == (None, None)
    assert evidence("地下车库门坏了 人在里面出不来")[0] is not None
