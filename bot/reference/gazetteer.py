"""Hohhot's districts, streets and communities, and the names residents use for them.

Source: data/gazetteer/*.csv (national statistical division codes) plus
data/locations/places.csv, the mapping table of compounds, roads and landmarks that
admins grow. Everything that knows a place name goes through `Gazetteer`.
"""
from __future__ import annotations

import csv
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bot.paths import DATA_DIR

GAZETTEER_DIR = DATA_DIR / "gazetteer"
PLACES_CSV = DATA_DIR / "locations" / "places.csv"

LEVELS = ("district", "street", "community", "place")

# Official community suffixes, longest first; residents drop them.
_COMMUNITY_SUFFIXES = ("社区居民委员会", "社区居委会", "居民委员会", "村民委员会", "居委会", "村委会")
# Short forms residents use for the rural counties / banners.
_DISTRICT_SHORT = {
    "150121": ("土左旗", "土左", "土默特左旗"),
    "150122": ("托县",),
    "150123": ("和林县", "和林"),
    "150124": ("清水河",),
    "150125": ("武川",),
    "150172": ("经开区", "呼市经开区", "经济技术开发区"),
}
# Bare names shorter than this are common words (草原, 阳光): too risky to match alone.
_MIN_BARE_LEN = 3


@dataclass(frozen=True)
class Place:
    code: str
    name: str
    level: str
    district_code: str | None
    street_code: str | None = None
    community_code: str | None = None

    @property
    def full_name(self) -> str:
        return self.name


def _community_aliases(name: str) -> list[str]:
    out = [name]
    for suffix in _COMMUNITY_SUFFIXES:
        if name.endswith(suffix):
            bare = name[: -len(suffix)]
            if suffix.startswith("村"):
                if len(bare) >= 2:  # 镇村民委员会 would give 镇村, an ordinary word
                    out.append(bare + "村")
            else:
                if not bare.endswith("社区"):
                    out.append(bare + "社区")
                else:
                    out.append(bare)
                    bare = bare[:-2]
            if len(bare) >= _MIN_BARE_LEN and not bare.endswith(("村", "镇", "乡")):
                out.append(bare)
            break
    else:
        if name.endswith("社区") and len(name) - 2 >= _MIN_BARE_LEN:
            out.append(name[:-2])
    if "虚拟" in name:  # administrative placeholders nobody writes
        return [name]
    return out


def _street_aliases(name: str) -> list[str]:
    out = [name]
    base = re.sub(r"[（(].*?[）)]", "", name)
    inner = re.findall(r"[（(](.*?)[）)]", name)
    if base != name:
        out.append(base)
        out.extend(inner)
    if base.endswith("街道"):
        bare = base[:-2]
        out.append(bare)
        if bare.endswith("路"):  # 乌兰察布东路街道 is also written 乌兰察布东大街街道
            for alt in (bare[:-1] + "大街", bare[:-1] + "街"):
                out.extend([alt + "街道", alt])
        elif bare.endswith("大街"):
            out.append(bare[:-2] + "路" + "街道")
    elif base.endswith(("镇", "乡")) and len(base) - 1 >= _MIN_BARE_LEN - 1:
        if len(base) - 1 >= 2:
            out.append(base[:-1] + ("镇" if base.endswith("乡") else "乡"))  # 乡/镇 mix-ups
    for prefix in ("新城区", "呼和浩特", "内蒙古"):
        if base.startswith(prefix) and len(base) > len(prefix) + 2:
            out.append(base[len(prefix):])
    if base.endswith("经济技术开发区"):
        out.append(base.replace("经济技术开发区", "开发区"))
    return [a for a in dict.fromkeys(out) if len(a) >= 2]


class Gazetteer:
    def __init__(self, places: Iterable[Place], aliases: dict[str, list[Place]]):
        self.places: dict[str, Place] = {}
        for p in places:
            self.places.setdefault(p.code, p)
        self.aliases = aliases

    # --- construction -------------------------------------------------
    @classmethod
    def load(cls, folder: Path = GAZETTEER_DIR, places_csv: Path | None = PLACES_CSV) -> Gazetteer:
        aliases: dict[str, list[Place]] = defaultdict(list)
        places: list[Place] = []

        def add(alias: str, place: Place) -> None:
            alias = alias.strip()
            if alias and place not in aliases[alias]:
                aliases[alias].append(place)

        with open(folder / "districts.csv", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                p = Place(row["code"], row["name"], "district", row["code"])
                places.append(p)
                add(p.name, p)
                for short in _DISTRICT_SHORT.get(p.code, ()):
                    add(short, p)
        with open(folder / "streets.csv", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                p = Place(row["code"], row["name"], "street", row["areaCode"], row["code"])
                places.append(p)
                for alias in _street_aliases(p.name):
                    add(alias, p)
        with open(folder / "communities.csv", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                p = Place(row["code"], row["name"], "community", row["areaCode"], row["streetCode"], row["code"])
                places.append(p)
                for alias in _community_aliases(p.name):
                    add(alias, p)
        if places_csv is not None and places_csv.exists():
            for p, names in read_places_csv(places_csv):
                places.append(p)
                for alias in names:
                    add(alias, p)
        # An alias that names a higher level (district/street) beats a community's bare name.
        for alias, cands in aliases.items():
            levels = {c.level for c in cands}
            for high in ("district", "street"):
                if high in levels and len(levels) > 1:
                    aliases[alias] = [c for c in cands if c.level == high]
                    break
        return cls(places, dict(aliases))

    # --- queries -------------------------------------------------------
    def get(self, code: str | None) -> Place | None:
        return self.places.get(code) if code else None

    def candidates(self, alias: str) -> list[Place]:
        return list(self.aliases.get(alias, ()))

    def name_of(self, code: str | None) -> str:
        p = self.get(code)
        return p.name if p else ""

    def describe(self, place: Place) -> str:
        """District / street / community, as a worker or resident reads it."""
        parts = [self.name_of(place.district_code)]
        if place.level in ("community", "place") and place.street_code:
            parts.append(self.name_of(place.street_code))
        if place.level == "street" or place.level == "district":
            if place.level == "street":
                parts.append(place.name)
        else:
            parts.append(place.name)
        return " ".join(x for x in parts if x)

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """Greedy longest-match scan of known aliases: (start, end, alias). Used by tools
        and as the reference the spaCy matcher is tested against."""
        out: list[tuple[int, int, str]] = []
        i = 0
        max_len = self._max_alias_len
        while i < len(text):
            for j in range(min(len(text), i + max_len), i + 1, -1):
                if text[i:j] in self.aliases:
                    out.append((i, j, text[i:j]))
                    i = j
                    break
            else:
                i += 1
        return out

    @property
    def _max_alias_len(self) -> int:
        return max(len(a) for a in self.aliases)


PLACES_FIELDS = ("name", "aliases", "district_code", "street_code", "community_code", "note")


def read_places_csv(path: Path) -> list[tuple[Place, list[str]]]:
    """Mapping table rows: a compound/road/landmark name to the most precise known unit."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for row in csv.DictReader(line for line in fh if not line.startswith("#")):
            name = (row.get("name") or "").strip()
            if not name:
                continue
            district = (row.get("district_code") or "").strip() or None
            street = (row.get("street_code") or "").strip() or None
            community = (row.get("community_code") or "").strip() or None
            code = "place:" + name
            p = Place(code, name, "place", district, street, community)
            # Two-character aliases hit ordinary words (门口内大对面); keep three or more.
            names = [name] + [a.strip() for a in (row.get("aliases") or "").split("|") if len(a.strip()) >= 3]
            out.append((p, names))
    return out


# The place table changes while the servers run (an admin adds a place in the console):
# every process re-reads it when its files changed, looking at most every few seconds.
RELOAD_CHECK_S = float(os.environ.get("QC_GAZETTEER_CHECK_S", "2"))
_loaded: dict[str, object] = {"stamp": None, "checked": float("-inf"), "gazetteer": None}
_load_lock = threading.Lock()


def data_dir() -> Path:
    """The data folder the running servers read the place table from (the console writes
    places to QC_TRAIN_DATA_DIR, so both read that one when it is set)."""
    return Path(os.environ.get("QC_TRAIN_DATA_DIR") or DATA_DIR)


def _sources() -> tuple[Path, Path]:
    return data_dir() / "gazetteer", data_dir() / "locations" / "places.csv"


def _stamp(folder: Path, places_csv: Path) -> tuple:
    out = []
    for path in (folder / "districts.csv", folder / "streets.csv", folder / "communities.csv", places_csv):
        try:
            st = path.stat()
            out.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((str(path), None))
    return tuple(out)


def default_gazetteer() -> Gazetteer:
    """The place table as its files say now (reloaded when they change; the same object
    as long as they do not, so callers may cache what they build from it per object)."""
    with _load_lock:
        now = time.monotonic()
        if _loaded["gazetteer"] is None or now - _loaded["checked"] >= RELOAD_CHECK_S:
            folder, places_csv = _sources()
            stamp = _stamp(folder, places_csv)
            if stamp != _loaded["stamp"] or _loaded["gazetteer"] is None:
                _loaded["gazetteer"] = Gazetteer.load(folder, places_csv)
                _loaded["stamp"] = stamp
            _loaded["checked"] = now
        return _loaded["gazetteer"]  # type: ignore[return-value]
