"""The wording of every message, from `messages.toml`: Jinja2 templates per message kind and
language, checked whole at start-up."""

import tomllib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, StrictUndefined, Template, TemplateError, pass_context
from jinja2.runtime import Context

from shared.departments import department
from shared.events import Language

SHIPPED = Path(__file__).with_name("messages.toml")
PARK_TIME = ZoneInfo("Asia/Shanghai")


class Templates:
    def __init__(self, source: Mapping[str, Mapping[str, Mapping[str, str]]]) -> None:
        """`source`: message kind -> language code -> {"subject", "body"}."""
        # Plain text, not HTML: nothing to escape. Strict: a missing value is an error, never
        # an empty gap in a message.
        environment = Environment(undefined=StrictUndefined, autoescape=False)  # noqa: S701
        environment.filters["park_time"] = park_time
        environment.filters["department"] = department_name
        self._compiled: dict[tuple[str, Language], tuple[Template, Template]] = {}
        for kind, versions in source.items():
            for code, parts in versions.items():
                where = f"{kind}.{code}"
                try:
                    language = Language(code)
                    compiled = (
                        environment.from_string(parts["subject"]),
                        environment.from_string(parts["body"]),
                    )
                except (ValueError, KeyError, TemplateError) as exc:
                    raise ValueError(f"message template {where}: {exc!r}") from None
                self._compiled[(kind, language)] = compiled

    @classmethod
    def load(cls, path: Path = SHIPPED) -> "Templates":
        try:
            return cls(tomllib.loads(path.read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{path}: not usable message templates: {exc}") from None

    def render(self, kind: str, language: Language, values: Mapping[str, Any]) -> tuple[str, str]:
        """The subject and body of a message of this kind in this language."""
        subject, body = self._compiled[(kind, language)]
        context = {**values, "language": language}
        return subject.render(context), body.render(context)

    def check(self, samples: Mapping[str, Mapping[str, Any]]) -> None:
        """Renders every kind the domain sends, in every language, with a sample of the values
        it passes: a template that is missing or fails is an error now, not at delivery."""
        for kind, values in samples.items():
            for language in Language:
                where = f"{kind}.{language.value}"
                if (kind, language) not in self._compiled:
                    raise ValueError(f"message template {where} is missing")
                try:
                    self.render(kind, language, values)
                except Exception as exc:  # any failure of a template is the template's fault
                    raise ValueError(f"message template {where} fails: {exc!r}") from None


def park_time(moment: datetime) -> str:
    return moment.astimezone(PARK_TIME).strftime("%Y-%m-%d %H:%M")


@pass_context
def department_name(context: Context, code: str) -> str:
    return department(code).name(context["language"])
