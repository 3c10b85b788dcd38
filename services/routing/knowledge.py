"""What each department's remit covers: the profiles in `profiles/`, loaded and validated.

A profile is reviewed data (see profiles/README.md): entries of a department's remit, each with
its source and the Chinese and English terms people use for it. Loading refuses anything that
would make the router's knowledge ambiguous or untraceable: an unknown department, an entry
without a declared source, a term twice in one department, or a term claimed by two.

Pure: reads the profile files and nothing else.
"""

import hashlib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.routing.domain import normalise
from shared.departments import DEPARTMENTS, SUPERVISION

PROFILES_DIR = Path(__file__).with_name("profiles")
KINDS = frozenset({"duty", "service", "complaint", "everyday"})
ROUTABLE = frozenset(code for code in DEPARTMENTS if code != SUPERVISION)

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[a-z]")
_ENTRY_KEYS = frozenset({"matter", "source", "kind", "zh", "en"})
_SOURCE_KEYS = frozenset({"id", "title", "url", "citation"})


class ProfileError(ValueError):
    """A profile that cannot be used; names the file and what is wrong."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        super().__init__(f"{source}: {message}")


@dataclass(frozen=True, slots=True)
class Entry:
    department: str
    matter: str
    source: str
    kind: str
    terms: tuple[str, ...]
    """Normalised, Chinese and English together."""


@dataclass(frozen=True, slots=True)
class Knowledge:
    entries: tuple[Entry, ...]
    digest: str
    """Changes whenever any profile's content changes: part of every model version."""
    directory: Path = PROFILES_DIR

    def departments(self) -> frozenset[str]:
        return frozenset(entry.department for entry in self.entries)

    def terms_of(self, department: str) -> list[str]:
        return [
            term for entry in self.entries if entry.department == department for term in entry.terms
        ]


def load_knowledge(directory: Path = PROFILES_DIR) -> Knowledge:
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise ProfileError(str(directory), "holds no profile (*.toml)")
    digest = hashlib.sha256()
    entries: list[Entry] = []
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ProfileError(str(path), f"cannot read: {exc.strerror}") from None
        digest.update(path.name.encode() + b"\0" + raw + b"\0")
        entries += parse_profile(raw.decode("utf-8"), str(path), expected=path.stem)
    knowledge = Knowledge(tuple(entries), digest.hexdigest()[:12], directory)
    missing = ROUTABLE - knowledge.departments()
    if missing:
        raise ProfileError(str(directory), f"no profile for {sorted(missing)}")
    check_conflicts(knowledge.entries, str(directory))
    return knowledge


def parse_profile(text: str, source: str, expected: str | None = None) -> list[Entry]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(source, f"not valid TOML: {exc}") from None
    department = document.get("department")
    if department not in DEPARTMENTS:
        raise ProfileError(source, f"unknown department {department!r}")
    if department not in ROUTABLE:
        raise ProfileError(source, f"{department} is never a routing target")
    if expected is not None and department != expected:
        raise ProfileError(source, f"holds {department!r}, but the file is named {expected!r}")
    sources = _sources(document.get("source", []), source)
    raw_entries = document.get("entry", [])
    if not isinstance(raw_entries, list) or not raw_entries:
        raise ProfileError(source, "has no [[entry]]")
    entries: list[Entry] = []
    seen: dict[str, str] = {}
    for index, raw in enumerate(raw_entries, 1):
        entry = _entry(raw, department, sources, f"{source}, entry #{index}")
        for term in entry.terms:
            if term in seen:
                raise ProfileError(
                    source,
                    f"term {term!r} twice: in {seen[term]!r} and in {entry.matter!r}",
                )
            seen[term] = entry.matter
        entries.append(entry)
    return entries


def check_conflicts(entries: Iterable[Entry], source: str) -> None:
    owner: dict[str, str] = {}
    for entry in entries:
        for term in entry.terms:
            other = owner.setdefault(term, entry.department)
            if other != entry.department:
                raise ProfileError(
                    source,
                    f"term {term!r} is claimed by both {other} and {entry.department}: "
                    "write the phrase that tells them apart",
                )


def _sources(raw: Any, source: str) -> frozenset[str]:
    if not isinstance(raw, list) or not raw:
        raise ProfileError(source, "declares no [[source]]")
    ids: set[str] = set()
    for item in raw:
        if not isinstance(item, dict) or set(item) - _SOURCE_KEYS:
            raise ProfileError(source, f"a [[source]] takes only {sorted(_SOURCE_KEYS)}")
        source_id, title = item.get("id"), item.get("title")
        if not isinstance(source_id, str) or not isinstance(title, str) or not title.strip():
            raise ProfileError(source, "every [[source]] needs an id and a title")
        if not isinstance(item.get("url", item.get("citation")), str):
            raise ProfileError(source, f"source {source_id!r} needs a url or a citation")
        if source_id in ids:
            raise ProfileError(source, f"source {source_id!r} declared twice")
        ids.add(source_id)
    return frozenset(ids)


def _entry(raw: Any, department: str, sources: frozenset[str], where: str) -> Entry:
    if not isinstance(raw, dict):
        raise ProfileError(where, "is not a table")
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise ProfileError(where, f"unknown keys {sorted(unknown)}")
    matter, source_id, kind = raw.get("matter"), raw.get("source"), raw.get("kind", "duty")
    if not isinstance(matter, str) or not matter.strip():
        raise ProfileError(where, "needs a matter")
    if source_id not in sources:
        raise ProfileError(where, f"source {source_id!r} is not declared")
    if kind not in KINDS:
        raise ProfileError(where, f"kind must be one of {sorted(KINDS)}")
    terms: list[str] = []
    for language in ("zh", "en"):
        values = raw.get(language, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ProfileError(where, f"'{language}' must be a list of strings")
        terms += [_term(value, language, where) for value in values]
    if not terms:
        raise ProfileError(where, "has no terms")
    return Entry(department, matter.strip(), source_id, kind, tuple(terms))


def _term(value: str, language: str, where: str) -> str:
    term = normalise(value)
    if language == "zh" and len(_CJK.findall(term)) < 2:
        raise ProfileError(where, f"Chinese term {value!r} needs at least two characters")
    if language == "en" and len(_LATIN.findall(term)) < 3:
        raise ProfileError(where, f"English term {value!r} needs at least three letters")
    if len(term) > 60:
        raise ProfileError(where, f"term {value!r} is longer than 60 characters")
    return term
