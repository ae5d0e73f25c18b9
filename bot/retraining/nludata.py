"""Writing reviewed examples into the training data: entity spans snapped to jieba
token boundaries (the pipeline's tokenizer and dictionaries), examples appended to
the block of their intent in data/nlu (deduplicated, the rest of the file untouched),
new place names into the mapping table and the jieba dictionary. Every write is
atomic: temp file, fsync, os.replace, fsync of the folder."""

from __future__ import annotations

import csv
import fcntl
import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.reference.dictionaries import PLACE_FREQ
from bot.reference.gazetteer import PLACES_FIELDS

ENTITY_TYPES = ("place", "community", "street", "district")  # the domain's place entities
INBOX_FILE = "inbox.yml"  # intents no data/nlu file has yet


def atomic_write(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one (also after a crash)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(str(path.parent), os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


@contextmanager
def data_lock(data_dir: Path) -> Iterator[None]:
    """One writer of the training data at a time (two admins accepting at once would
    otherwise each rewrite the file from what they read: one example lost)."""
    with open(Path(data_dir) / ".write.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --- spans ------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    entity: str
    text: str
    warning: str = ""  # set when the span had to be moved to token boundaries
    as_marked: str = ""

    def as_json(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "entity": self.entity, "value": self.text}


class SpanError(ValueError):
    pass


def tokens_of(text: str, dictionary_dir: Path | None = None) -> list[tuple[int, int]]:
    """(start, end) of the pipeline's jieba tokens (same normalisation, same dictionaries)."""
    from bot.nlu.tokenizer import jieba_tokens
    from bot.reference.dictionaries import load_into_jieba

    if dictionary_dir is not None:
        load_into_jieba(Path(dictionary_dir))
    else:
        load_into_jieba()
    return [(t.start, t.end) for t in jieba_tokens(text)]


def snap_span(text: str, start: int, end: int, entity: str, dictionary_dir: Path | None = None) -> Span:
    """The smallest run of whole tokens covering [start, end); a warning says when that
    differs from what was marked (the entity then includes, or is, something else)."""
    if entity not in ENTITY_TYPES:
        raise SpanError(f"未知的实体类型：{entity}")
    if not (0 <= start < end <= len(text)):
        raise SpanError("标注的范围不在句子里")
    tokens = tokens_of(text, dictionary_dir)
    covering = [(s, e) for s, e in tokens if s < end and e > start]
    if not covering:
        raise SpanError(f"「{text[start:end]}」不是一个词（只含空白或标点），无法标注")
    s, e = covering[0][0], covering[-1][1]
    marked = text[start:end]
    warning = ""
    if (s, e) != (start, end):
        warning = (f"「{marked}」与分词边界不一致，已调整为「{text[s:e]}」。"
                   f"若地名被切开，请先把它加入地名表和分词词典。")
    return Span(s, e, entity, text[s:e], warning, marked)


def find_span(text: str, mention: str, entity: str, dictionary_dir: Path | None = None) -> Span:
    """The admin types the place as it appears in the text; its first occurrence is marked."""
    mention = (mention or "").strip()
    if not mention:
        raise SpanError("请填写要标注的地名")
    at = text.find(mention)
    if at < 0:
        raise SpanError(f"句子里没有「{mention}」")
    return snap_span(text, at, at + len(mention), entity, dictionary_dir)


# --- Rasa YAML ----------------------------------------------------------------------

_MARKUP = re.compile(r"\[([^\]]*)\]\((\w+)(?::[^)]*)?\)|\[([^\]]*)\]\{[^}]*\}")
_SPECIAL = str.maketrans({"[": "［", "]": "］", "(": "（", ")": "）", "{": "｛", "}": "｝"})


def plain(example: str) -> str:
    """An example line without entity markup (the text a model sees)."""
    return _MARKUP.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(3), example).strip()


def markup(text: str, spans: Sequence[Span | dict]) -> str:
    """Rasa's inline markup: [新城区](district). Characters Rasa's markup uses are made
    full-width outside spans, so a resident's brackets cannot break the file."""
    text = " ".join(text.split())
    parts, pos = [], 0
    norm = []
    for sp in spans:
        d = sp.as_json() if isinstance(sp, Span) else sp
        norm.append((int(d["start"]), int(d["end"]), str(d["entity"])))
    for start, end, entity in sorted(norm):
        if start < pos:
            continue  # overlapping spans: the first wins
        parts.append(text[pos:start].translate(_SPECIAL))
        parts.append(f"[{text[start:end].translate(_SPECIAL)}]({entity})")
        pos = end
    parts.append(text[pos:].translate(_SPECIAL))
    # (inside `examples: |`, a literal block, YAML indicators are plain text)
    return "".join(parts).strip()


def nlu_files(nlu_dir: Path) -> list[Path]:
    return sorted(p for p in Path(nlu_dir).glob("*.yml") if not p.name.startswith("."))


def _yaml() -> Any:
    """A round-trip YAML (ruamel) set to the layout of data/nlu: comments, quotes, blank
    lines and the order of untouched parts are written back as they were read."""
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=2, offset=0)  # "nlu:\n- intent: x\n  examples: |\n    - ..."
    y.width = 1 << 16  # never fold a long line
    return y


def _load(path: Path) -> Any:
    return _yaml().load(path.read_text(encoding="utf-8")) or {}


def _dump(doc: Any) -> str:
    out = io.StringIO()
    _yaml().dump(doc, out)
    return out.getvalue()


def _intent_blocks(doc: Any) -> list[Any]:
    """The `- intent:` entries of a Rasa NLU file with a literal `examples` block."""
    items = doc.get("nlu") if hasattr(doc, "get") else None
    return [b for b in items or [] if hasattr(b, "get") and isinstance(b.get("intent"), str)
            and isinstance(b.get("examples"), str)]


def _example_lines(examples: str) -> list[str]:
    return [line.strip()[2:] for line in examples.splitlines() if line.strip().startswith("- ")]


def _literal(text: str) -> Any:
    from ruamel.yaml.scalarstring import LiteralScalarString

    return LiteralScalarString(text)


def _as_examples(lines: Sequence[str]) -> str:
    return "".join(f"- {line}\n" for line in lines)


def existing_examples(nlu_dir: Path) -> dict[str, set]:
    """intent → plain texts of its examples, over every file."""
    out: dict[str, set] = {}
    for path in nlu_files(nlu_dir):
        for block in _intent_blocks(_load(path)):
            out.setdefault(block["intent"], set()).update(plain(line) for line in _example_lines(block["examples"]))
    return out


_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # str.splitlines' and YAML's


def add_examples(nlu_dir: Path, intent: str, lines: Iterable[str]) -> tuple[Path | None, list[str]]:
    with data_lock(nlu_dir):
        return _add_examples(nlu_dir, intent, list(lines))


def _add_examples(nlu_dir: Path, intent: str, lines: Iterable[str]) -> tuple[Path | None, list[str]]:
    """Append new example lines (markup) to the first block of `intent`, in the first file
    that has one (by name), else to data/nlu/inbox.yml. Lines whose plain text the intent
    already has (in any file) are left out. Returns the file written and what was added."""
    if not re.fullmatch(r"[a-z_]+", intent):
        raise ValueError(f"bad intent name {intent!r}")
    nlu_dir = Path(nlu_dir)
    every = existing_examples(nlu_dir)
    known = every.get(intent, set())
    new: list[str] = []
    for line in lines:
        text = plain(line)
        clash = [other for other, texts in every.items() if other != intent and text in texts]
        if clash:  # the same words cannot teach two intents
            raise ValueError(f"「{text}」已是意图 {clash[0]} 的训练样本")
        if text and text not in known and not any(c in line for c in _LINE_BREAKS):
            known.add(text)
            new.append(line)
    if not new:
        return None, []
    for path in nlu_files(nlu_dir):
        doc = _load(path)
        block = next((b for b in _intent_blocks(doc) if b["intent"] == intent), None)
        if block is not None:
            old = str(block["examples"])
            block["examples"] = _literal(old + ("\n" if old and not old.endswith("\n") else "") + _as_examples(new))
            atomic_write(path, _dump(doc))
            return path, new
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    path = nlu_dir / INBOX_FILE
    doc = _load(path) if path.exists() else CommentedMap(version=DoubleQuotedScalarString("3.1"))
    if doc.get("nlu") is None:
        doc["nlu"] = []
    doc["nlu"].append(CommentedMap(intent=intent, examples=_literal(_as_examples(new))))
    atomic_write(path, _dump(doc))
    return path, new


def remove_examples(nlu_dir: Path, file_name: str, lines: Iterable[str]) -> list[str]:
    """Take example lines an accept wrote (add_examples' answer) out again: only those exact
    lines, once each, in that file; returns what was removed (an undone accept)."""
    with data_lock(nlu_dir):
        path = Path(nlu_dir) / Path(file_name).name
        if not path.exists():
            return []
        wanted, removed = list(lines), []
        doc = _load(path)
        for block in _intent_blocks(doc):
            kept = []  # the block's own lines, verbatim, but for the ones taken out
            for line in str(block["examples"]).splitlines(keepends=True):
                example = line.strip()[2:] if line.strip().startswith("- ") else None
                if example is not None and example in wanted:
                    wanted.remove(example)
                    removed.append(example)
                else:
                    kept.append(line)
            if "".join(kept) != block["examples"]:
                block["examples"] = _literal("".join(kept))
        if removed:
            atomic_write(path, _dump(doc))
        return removed


_WORD = re.compile(r"[\u4e00-\u9fffA-Za-z0-9]{2,20}")


def plausible_word(name: str) -> bool:
    """A name for the jieba dictionary: 2–20 Han characters, letters or digits, nothing else
    (a marked span with a space or punctuation is two words, not one name)."""
    return bool(_WORD.fullmatch(name or "")) and not (name or "").isdigit()


def add_word(data_dir: Path, name: str) -> bool:
    """A place name into the jieba dictionary only (data/dictionaries/places.txt), so that
    the tokenizer keeps it whole; False when it is there already."""
    name = (name or "").strip()
    if not plausible_word(name):
        raise ValueError("只有像地名的词才能加入分词词典：2–20个汉字、字母或数字，不含空格和标点")
    with data_lock(data_dir):
        dict_path = Path(data_dir) / "dictionaries" / "places.txt"
        words = dict_path.read_text(encoding="utf-8") if dict_path.exists() else ""
        if any(line.split(" ")[0] == name for line in words.splitlines()):
            return False
        atomic_write(dict_path, words + ("" if not words or words.endswith("\n") else "\n") + f"{name} {PLACE_FREQ} ns\n")
        return True


# --- places ---------------------------------------------------------------------------


def add_place(data_dir: Path, name: str, district_code: str = "", street_code: str = "",
              community_code: str = "", note: str = "审核页添加") -> bool:
    with data_lock(data_dir):
        return _add_place(data_dir, name, district_code, street_code, community_code, note)


def _add_place(data_dir: Path, name: str, district_code: str, street_code: str, community_code: str,
               note: str) -> bool:
    """A new row in the mapping table (data/locations/places.csv) and the name in the
    jieba dictionary (data/dictionaries/places.txt); False when the name is there already."""
    name = "".join((name or "").split())
    if not (2 <= len(name) <= 40) or any(c in name for c in ",|\"#"):
        raise ValueError("地名须为2–40个字，且不含逗号、竖线、引号或#")
    for code in (district_code, street_code, community_code):
        if code and not re.fullmatch(r"\d{6,12}", code):
            raise ValueError("区划代码须为6–12位数字")
    data_dir = Path(data_dir)
    csv_path = data_dir / "locations" / "places.csv"
    dict_path = data_dir / "dictionaries" / "places.txt"
    text = csv_path.read_text(encoding="utf-8")
    rows = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    if any((r.get("name") or "").strip() == name for r in rows):
        return False
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([name, "", district_code, street_code, community_code, note])
    assert len(PLACES_FIELDS) == 6
    atomic_write(csv_path, text + ("" if text.endswith("\n") else "\n") + buf.getvalue())
    words = dict_path.read_text(encoding="utf-8") if dict_path.exists() else ""
    if not any(line.split(" ")[0] == name for line in words.splitlines()):
        atomic_write(dict_path, words + ("" if not words or words.endswith("\n") else "\n") + f"{name} {PLACE_FREQ} ns\n")
    return True
