"""The park's department directory, loaded from `departments.toml` beside this file."""

import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

DIRECTORY_FILE = Path(__file__).with_name("departments.toml")


class Side(StrEnum):
    TIANJIN = "tianjin"
    PARK = "park"
    ZHONGGUANCUN = "zhongguancun"


@dataclass(frozen=True, slots=True)
class Department:
    code: str
    side: Side
    name_en: str
    name_zh: str
    handles: str

    def name(self, language: str) -> str:
        return self.name_zh if language == "zh" else self.name_en


def load_directory(path: Path = DIRECTORY_FILE) -> dict[str, Department]:
    with path.open("rb") as file:
        document = tomllib.load(file)
    directory = {}
    for code, entry in document.get("department", {}).items():
        try:
            directory[code] = Department(
                code=code,
                side=Side(entry["side"]),
                name_en=entry["name_en"],
                name_zh=entry["name_zh"],
                handles=entry["handles"],
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path}: department {code!r}: {exc}") from None
    return directory


DEPARTMENTS: dict[str, Department] = load_directory()

TRIAGE = "park-service"
"""Where a ticket nobody can place goes."""

SUPERVISION = "park-supervision"
"""Receives SLA escalations; never the target of routing or a transfer."""

for _required in (TRIAGE, SUPERVISION):
    if _required not in DEPARTMENTS:
        raise ValueError(f"{DIRECTORY_FILE}: the directory must have {_required!r}")


def department(code: str) -> Department:
    try:
        return DEPARTMENTS[code]
    except KeyError:
        raise ValueError(f"unknown department code {code!r}") from None
