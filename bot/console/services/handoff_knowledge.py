"""加入知识库: an agent (or admin) adds the answer they gave to a 咨询 item — a question the
knowledge base could not answer (reason question) or a 留言 kept as one (转咨询) — to
data/knowledge/consult.yml (bot/retraining/knowledge.py), from the conversation page.

    POST /console/handoff/{id}/knowledge   id, title, keywords, answer (bot/console/handoff.py)

The question goes to the review inbox (source knowledge, intent consult) so the next
retraining learns to read such questions as consult; the step 加入知识库 (note: the topic id)
records who and when."""
from __future__ import annotations

import re
from datetime import datetime

from bot.console import services as svc
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.handoff import CONSULT, KNOWLEDGE_ADDED, QUESTION, Handoff
from bot.retraining import knowledge
from bot.retraining.inbox import Sample, record
from bot.storage.handoff import HandoffRepository

# question words and fillers: no use as keywords (the knowledge base matches substrings)
_FILLER = re.compile(r"^(?:怎么|怎样|如何|什么|哪里|哪儿|多少|为什么|可以|能不能|是不是|请问|你好|我们|我家|这个|那个|"
                     r"一下|的话|吗|呢|啊)$")


def is_consult(h: Handoff) -> bool:
    return h.reason == QUESTION or any(e.kind == CONSULT for e in h.events)


def suggested_keywords(question: str) -> str:
    """The question's words of two to six characters (the pipeline's jieba), fillers left out."""
    from bot.retraining.nludata import tokens_of

    words = [question[a:b] for a, b in tokens_of(question)]
    keep = [w for w in words if 2 <= len(w) <= 6 and w.isalnum() and not _FILLER.match(w)]
    return " ".join(dict.fromkeys(keep))


def fresh_form(h: Handoff, messages: list[dict]) -> dict[str, str]:
    """Prefilled from the conversation: the resident's first words (title, keywords) and the
    agent's latest reply (the answer)."""
    question = next((m["text"] for m in messages if m["author"] == "resident"), "")
    replies = [m["text"] for m in messages if m["outgoing"] and m["author"].startswith("user:")]
    return {"kb_id": f"question_{h.id}", "kb_title": question[:knowledge.MAX_TITLE],
            "kb_keywords": suggested_keywords(question), "kb_answer": replies[-1] if replies else ""}


def recorded(uow: ConsoleUnitOfWork, p: svc.Principal, handoff_id: int, topic_id: str, question: str,
             now: datetime) -> None:
    """The step and the review inbox item, in one transaction (a repeat adds no second item)."""
    with uow:
        conn = uow.connection()
        HandoffRepository(conn).event(handoff_id, KNOWLEDGE_ADDED, p.actor, now, topic_id)
        record(conn, Sample(source="knowledge", text=question, dedupe_key=f"knowledge:{handoff_id}:{topic_id}",
                            predicted_intent="consult",
                            correction={"intent": "consult", "chosen_by": "agent", "topic": topic_id}), now)
        uow.commit()
