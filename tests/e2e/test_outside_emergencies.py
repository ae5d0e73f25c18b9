"""Emergencies told inside other complaints, from outside (the outside tester's report of
2026-12-06, /work/team/outside15.md): a resident over the REST channel of the real Rasa and
action servers. Each missed emergency was answered as a heating, water, power or noise
complaint before; each trap was answered "call 110/119/120" before."""
from __future__ import annotations

import pytest

from tests.e2e.chat import Chat

MISSED = [
    # an emergency after a utility complaint
    "暖气不热，我妈昏迷了",
    "暖气不热，我妈现在喘不上气了",
    "停水三天了 我奶奶现在昏迷不醒",
    "停电了，我爸的呼吸机停了，现在喘不上气",
    "家里突然停电了 我爸在家用呼吸机 现在机器停了",
    "尊敬的领导：您好！我是新城区东风路街道居民，我们小区今冬暖气一直不达标，室温仅十二三度，家中老人孩子相继感冒，"
    "多次找供热公司均推诿扯皮，物业也不作为，居民怨声载道。更要紧的是，我母亲因受寒高烧，此刻已昏迷不醒，呼吸很弱。"
    "恳请尽快处理。此致敬礼",
    "俺跟你说，俺们这个楼暖气不热，冷得很，俺找了物业好几回了，物业说找热力公司，热力公司说找物业，俺老伴冻得直咳嗽，"
    "这会儿咳得喘不上气了，嘴唇都紫了",
    # carbon monoxide from home coal heating, in an elderly resident's words
    "俺家烧的是土暖气 今儿早上起来头晕恶心 老伴还没醒 叫不起来",
    # after several clauses of another complaint
    "我们小区噪音问题说明：楼上装修电钻声音很大，楼上装修电钻声音很大，我家老人刚刚晕倒在客厅，叫不醒。",
    "我们小区噪音问题说明：" + "楼上装修电钻声音很大，" * 20 + "另外，我家老人刚刚晕倒在客厅，叫不醒。",
    # a person lying motionless
    "楼下有个人躺在地上一动不动",
    "楼下有个人躺在地上好半天了 一动不动 喊他也不理",
]

TRAPS = [
    "小区锅炉房烟囱天天冒黑烟 呛得人喘不上气",  # a daily smoke nuisance
    "我们单元门口的灭火器全是过期的 真着火了都用不了",  # a what-if
    "俺年轻时候在厂里见过锅炉爆炸，可吓人了，现在俺们楼下那个锅炉房，俺老担心哪天也炸了，你们给看看去",  # a memory, a worry
]


@pytest.mark.parametrize("text", MISSED, ids=lambda t: t[:16])
def test_an_emergency_inside_another_complaint_is_answered_as_one(stack, text: str) -> None:
    assert Chat(stack).say(text)["keys"][0] == "utter_emergency"


@pytest.mark.parametrize("text", TRAPS, ids=lambda t: t[:16])
def test_a_worry_or_a_nuisance_is_not_an_emergency(stack, text: str) -> None:
    assert "utter_emergency" not in Chat(stack).say(text)["keys"]


def test_an_emergency_in_the_middle_of_the_complaint_form_is_answered_as_one(stack) -> None:
    chat = Chat(stack)
    assert chat.say("小区暖气不热好几天了")["keys"] == ["utter_ask_location_where"]
    assert chat.say("俺家烧的是土暖气 今儿早上起来头晕恶心 老伴还没醒 叫不起来")["keys"][0] == "utter_emergency"
