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


# round three (issue 15): the shapes of danger now in every register: a person in a danger state,
# a hazard present, violence or a break-in now, a call for rescue; the time a story is set in
DANGER_NOW_EVERY_REGISTER = [
    # chat
    "小区门口俩人动手了 一个拿着板砖往头上拍",
    "有人在撬对门的锁 我从猫眼看见的 现在还在撬",
    "大太阳底下 车里关着个娃 哭得嗓子都哑了",
    "有个骑车的被渣土车刮倒了 躺马路上没起来",
    "地下通道水都漫到腰了 有个老人困在中间",
    # call transcripts
    "来电人称其父亲患有阿尔茨海默病，今早出门后至今未归，请求协助寻找。",
    "市民来电反映：某小区地下车库积水已没过车顶，疑似仍有人员在车内。",
    "市民来电反映：一处车棚顶棚垮塌，一名老人被压在下面，无法动弹。",
    "来电人称：其母亲突发胸痛、呼吸困难，请求协助联系急救。",
    # letters
    "关于小区化粪池有儿童落入的紧急求助\n尊敬的领导：刚才一名男孩掉进了化粪池，请立即派人救援！",
    "关于高压线断落的紧急反映\n您好！小区门外一根高压线被风刮断，断头还在冒火星，来往行人很多。",
    # elderly speech
    "同志啊 我那老头子刚才吃着饭呢 筷子一下掉了 嘴也歪了 话都说不利索了",
    "闺女 我刚才在卫生间滑倒了 到现在还坐在地上起不来 儿女都不在家",
    "我跟你说 我老伴在里屋睡觉 我叫他叫半天都不吭声 屋里还生着炉子",
    "同志 这电梯升到一半停住了 黑咕隆咚的 我还在里面呢",
    "我跟你说 厨房那个燃气灶 一股臭味 窗户开了味还是冲",
    "我家老头有点失智 今天一早又自己出去了 有人看见他在铁道边上晃悠",
    "他下去捞桶 结果人也栽进去了 半天没动静",
    "刚才有个娃在坑边上玩 一下就滑进去了",
    # titles
    "轿车内锁着婴儿 车主不在",
    "河上冰裂 一名少年跌入冰窟",
    "广告牌砸落压住行人",
    "掉落的高压线带电 路人围着看",
]
ALARMING_BUT_NOT_NOW_EVERY_REGISTER = [
    # chat
    "街边的老柳树根都松了 砸着人咋办",
    "烧烤店烟道全是油 着火了可咋办",
    "邻居把电瓶车推进楼道充电 万一着了咋整",
    # call transcripts
    "来电人咨询：燃气泄漏报警器在哪里可以免费安装。",
    "来电人反映某路口车辆不让行，前几天有老人被剐蹭，希望加装信号灯。",
    # letters
    "关于电梯反复困人物业拖延维修的投诉\n尊敬的领导：上个月电梯困人，物业一小时后才到，至今电梯仍时好时坏。",
    # elderly speech
    "同志我跟你说 前阵子我们楼下电线着火 烧了好一会儿 到现在那线还耷拉着没人修",
    "我跟你说 昨天后半夜 变压器砰的一声冒了火 然后就全黑了 到现在也没来电",
    "楼前那棵杨树树干空了 一起风我就怕它倒了砸着人",
    "哪天着了火 我们这些老的跑都跑不出去",
    "去年夏天有个孩子从那个坎上摔下去了 到现在也没装栏杆",
    # titles
    "家里着火了保险能赔吗",
    "这个路口没有红绿灯 迟早出人命",
]


@pytest.mark.parametrize("text", DANGER_NOW_EVERY_REGISTER)
def test_round_three_danger_now_every_register(text: str) -> None:
    assert evidence(text)[0] is not None


@pytest.mark.parametrize("text", ALARMING_BUT_NOT_NOW_EVERY_REGISTER)
def test_round_three_alarming_words_are_not_danger_now(text: str) -> None:
    assert evidence(text)[0] is None


def test_sparks_that_cut_the_power_are_a_repair_unless_people_are_near() -> None:
    assert evidence("电线杆上冒火花 整片都停电了")[0] is None
    assert evidence("电线杆上冒火花 整片都停电了")[1] is not None
    assert evidence("电线杆上冒火花 整片都停电了 底下就是人行道")[0] is not None
    assert evidence("配电室往外冒火星子 请派人抢修")[0] is None
    assert evidence("配电室往外冒火星子 有股烧焦的味")[0] is not None


def test_smoke_from_a_chimney_or_a_barbecue_is_no_sign() -> None:
    assert evidence("工厂烟囱冒黑烟 呛死人")[1] is None
    assert evidence("烧烤摊浓烟滚滚 窗户都不敢开")[1] is None
    assert evidence("邻居家门缝往外冒烟")[1] is not None


def test_without_a_sign_the_classifier_needs_a_situation_told_about_now() -> None:
    leaflets = "商场门口有人发传单 拉着人不放"
    assert evidence(leaflets) == (None, None)
    assert decide(leaflets, ranking(("emergency", 0.6), ("illegal_ads", 0.3)))[0]["name"] == "illegal_ads"
    feared = "楼前那棵杨树树干空了 一起风我就怕它倒了砸着人"
    assert decide(feared, ranking(("emergency", 0.6), ("greenery", 0.3)))[0]["name"] == "greenery"
    bus = "等了快一个钟头公交都没来"
    assert decide(bus, ranking(("emergency", 0.5), ("transport", 0.4)))[0]["name"] == "transport"
    told_now = "隔壁屋里有人在喊 一直砸门 听着像出大事了"
    assert decide(told_now, ranking(("emergency", 0.3), ("noise", 0.2)))[0]["name"] == EMERGENCY


def test_a_what_if_sign_needs_a_classifier_sure_of_an_emergency() -> None:
    text = "烧烤店烟道全是油 着火了可咋办"
    assert evidence(text) == (None, "着火")
    assert decide(text, ranking(("ecology", 0.5), ("emergency", 0.4)))[0]["name"] == "ecology"
    assert decide(text, ranking(("emergency", 0.6), ("ecology", 0.3)))[0]["name"] == EMERGENCY


def test_a_weak_sign_said_with_urgency_needs_less() -> None:
    assert decide("邻居家门缝往外冒烟 快来人", ranking(("other", 0.8), ("emergency", 0.15)))[0]["name"] == EMERGENCY
    assert decide("邻居家门缝往外冒烟", ranking(("other", 0.8), ("emergency", 0.15)))[0]["name"] == "other"


# --- the outside tester's report (2026-12-06): a body in danger inside another complaint ---

BODY_IN_DANGER_INSIDE_A_COMPLAINT = [
    "暖气不热，我妈昏迷了",
    "暖气不热，我妈现在喘不上气了",
    "停水三天了 我奶奶现在昏迷不醒",
    "停电了，我爸的呼吸机停了，现在喘不上气",
    "家里突然停电了 我爸在家用呼吸机 现在机器停了",
    "俺家烧的是土暖气 今儿早上起来头晕恶心 老伴还没醒 叫不起来",
    "俺们这个楼暖气不热，俺老伴冻得直咳嗽，这会儿咳得喘不上气了，嘴唇都紫了",
    "楼下有个人躺在地上一动不动",
    "楼下有个人躺在地上好半天了",
    "我们小区噪音问题说明：" + "楼上装修电钻声音很大，" * 20 + "另外，我家老人刚刚晕倒在客厅，叫不醒。",
]


@pytest.mark.parametrize("text", BODY_IN_DANGER_INSIDE_A_COMPLAINT, ids=lambda t: t[:16])
def test_a_body_in_danger_is_an_emergency_however_sure_the_classifier_is_of_the_complaint(text: str) -> None:
    out = decide(text, ranking(("heating", 0.97), ("noise", 0.02), ("emergency", 0.01)))
    assert out[0] == {"name": EMERGENCY, "confidence": 0.9}
    # the rest share what is left: the fallback's ambiguity check (0.03) never fires
    assert [r["name"] for r in out[1:]] == ["heating", "noise"]
    assert out[1]["confidence"] == pytest.approx(0.1 * 0.97 / 0.99)


@pytest.mark.parametrize("text", [
    "小区锅炉房烟囱天天冒黑烟 呛得人喘不上气",  # smoke nuisance: weak at most
    "我们单元门口的灭火器全是过期的 真着火了都用不了",  # what-if
    "俺年轻时候在厂里见过锅炉爆炸，可吓人了，现在俺们楼下那个锅炉房，俺老担心哪天也炸了",  # memory and worry
    "化工厂排的废气太臭了 熏得人喘不上气",  # an irritant: the classifier decides
    "他动不动就在楼道里抽烟",  # 动不动 is habitual, 一动不动 is not
])
def test_worries_memories_and_nuisances_are_not_a_body_in_danger(text: str) -> None:
    assert decide(text, ranking(("ecology", 0.97), ("emergency", 0.03)))[0]["name"] == "ecology"
