"""The routing policy: which department owns a ticket, and why.

A policy is a TOML file of rules (see policy.toml beside this file). A rule names a department,
a priority, terms that must (`all`) or may (`any`) appear and terms that must not (`none`), and
optionally the ticket categories, enterprise origins and Zhongguancun certification it applies
to. Every rule whose conditions hold matches; the highest priority wins, then the most matched
terms, then the longest matched text. The best match of another department is the runner-up.
A ticket no rule matches goes to triage as "unplaceable".

Terms are matched on the normalised subject and description (NFKC, case-folded), all of them in
one pass of an Aho-Corasick automaton. Chinese has no spaces, so a term with CJK characters
matches anywhere; a Latin term matches whole words only ("tax" is not in "taxi"), and a Latin
term ending in `*` matches words that start with it ("relocat*").

Pure: no Kafka, no MongoDB; loading reads the policy file and nothing else.
"""

import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ahocorasick

from shared.departments import DEPARTMENTS, SUPERVISION, TRIAGE
from shared.events import Candidate, Category, Origin, RunnerUp, TicketContent

POLICY_FILE = Path(__file__).with_name("policy.toml")
UNPLACEABLE = "unplaceable"

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_RULE_KEYS = frozenset(
    {
        "id",
        "department",
        "priority",
        "any",
        "all",
        "none",
        "categories",
        "origins",
        "zhongguancun_certified",
        "note",
        "matter_of",
    }
)


class PolicyError(ValueError):
    """A policy that cannot be used; names the file and, where there is one, the rule."""

    def __init__(self, source: str, message: str, rule: str | None = None) -> None:
        self.source = source
        self.rule = rule
        where = f"{source}, rule {rule!r}" if rule else source
        super().__init__(f"{where}: {message}")


def normalise(text: str) -> str:
    """Full-width to half-width, one case, single spaces: how both terms and tickets are read."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass(frozen=True, slots=True)
class Term:
    text: str
    """Normalised, without a trailing `*`."""
    whole_word: bool
    prefix: bool

    @classmethod
    def parse(cls, raw: str) -> "Term":
        prefix = raw.endswith("*")
        text = normalise(raw.removesuffix("*"))
        return cls(text=text, whole_word=not _CJK.search(text), prefix=prefix)

    def contains(self, other: "Term") -> bool:
        """Whether every text in which this term is found also holds `other`."""
        return other.text in self.text


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    department: str
    priority: int
    any: tuple[Term, ...]
    all: tuple[Term, ...]
    none: tuple[Term, ...]
    categories: frozenset[Category] | None
    origins: frozenset[Origin] | None
    zhongguancun_certified: bool | None
    matter_of: frozenset[str] | None = None
    """The departments whose matter this rule settles the side of: it applies only when the
    ranker finds the ticket to be one of theirs (or the rule's own department's)."""

    def settles(self, matter: str | None) -> bool:
        return self.matter_of is None or matter is None or matter in self.matter_of

    def applies_to(self, ticket: TicketContent) -> bool:
        return (
            (self.categories is None or ticket.category in self.categories)
            and (self.origins is None or ticket.enterprise.origin in self.origins)
            and (
                self.zhongguancun_certified is None
                or ticket.enterprise.zhongguancun_certified is self.zhongguancun_certified
            )
        )

    def matched_terms(self, found: Mapping[str, int]) -> tuple[str, ...] | None:
        """The terms by which this rule matches text holding `found`, or None if it does not."""
        if any(term.text in found for term in self.none):
            return None
        required = [term.text for term in self.all]
        if not all(text in found for text in required):
            return None
        optional = [term.text for term in self.any if term.text in found]
        if self.any and not optional:
            return None
        return tuple(dict.fromkeys(required + optional))


@dataclass(frozen=True, slots=True)
class RuleMatch:
    rule: Rule
    matched_terms: tuple[str, ...]

    @property
    def rank(self) -> tuple[int, int, int]:
        return (
            self.rule.priority,
            len(self.matched_terms),
            sum(len(t) for t in self.matched_terms),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    department: str
    reason: str
    rule_id: str | None
    matched_terms: tuple[str, ...]
    runner_up: RunnerUp | None = None
    policy_version: str | None = None
    confidence: float | None = None
    candidates: tuple[Candidate, ...] = ()
    model_version: str | None = None


@dataclass(frozen=True)
class Policy:
    version: str
    source: str
    rules: tuple[Rule, ...]
    _automaton: Any = field(repr=False, compare=False)
    _terms: dict[str, Term] = field(repr=False, compare=False)
    _rules_by_term: dict[str, tuple[Rule, ...]] = field(repr=False, compare=False)
    _termless_rules: tuple[Rule, ...] = field(repr=False, compare=False)

    def decide(self, ticket: TicketContent, matter: str | None = None) -> Decision:
        """The best matching rule's decision; `matter`, the department the ranker found, keeps
        out the rules that settle the side of another matter."""
        found = self._find_terms(normalise(f"{ticket.subject}\n{ticket.description}"))
        evaluated: set[str] = set()
        candidates: list[RuleMatch] = []
        for rule in self._candidate_rules(found):
            if rule.id in evaluated:
                continue
            evaluated.add(rule.id)
            applies = rule.applies_to(ticket) and rule.settles(matter)
            matched = rule.matched_terms(found) if applies else None
            if matched is not None:
                candidates.append(RuleMatch(rule, matched))
        ranked = sorted(candidates, key=lambda c: c.rank, reverse=True)
        if not ranked:
            return Decision(TRIAGE, UNPLACEABLE, None, (), None, self.version)
        best = ranked[0]
        second = next((c for c in ranked if c.rule.department != best.rule.department), None)
        runner_up = (
            RunnerUp(
                department=second.rule.department,
                rule_id=second.rule.id,
                matched_terms=second.matched_terms,
            )
            if second
            else None
        )
        return Decision(
            department=best.rule.department,
            reason=f"rule {best.rule.id} matched {', '.join(best.matched_terms) or 'attributes'}",
            rule_id=best.rule.id,
            matched_terms=best.matched_terms,
            runner_up=runner_up,
            policy_version=self.version,
        )

    def _find_terms(self, text: str) -> dict[str, int]:
        """Every term in the text, with where it ends; Latin terms only on word boundaries."""
        found: dict[str, int] = {}
        if not self._terms:
            return found
        for end, key in self._automaton.iter(text):
            term = self._terms[key]
            start = end - len(term.text) + 1
            if term.whole_word and not _on_word_boundaries(text, start, end, term.prefix):
                continue
            found.setdefault(key, end)
        return found

    def _candidate_rules(self, found: Iterable[str]) -> Iterable[Rule]:
        yield from self._termless_rules
        for text in found:
            yield from self._rules_by_term.get(text, ())


def _on_word_boundaries(text: str, start: int, end: int, prefix: bool) -> bool:
    before_ok = start == 0 or not text[start - 1].isalnum() or bool(_CJK.match(text[start - 1]))
    if prefix:
        return before_ok
    after = end + 1
    after_ok = after >= len(text) or not text[after].isalnum() or bool(_CJK.match(text[after]))
    return before_ok and after_ok


def transfer_refusal(current_department: str, to_department: str) -> str | None:
    """Why a transfer from the ticket's current department cannot be made; None if it can."""
    if to_department == SUPERVISION:
        return f"{SUPERVISION} receives escalations, never tickets"
    if to_department == current_department:
        return f"the ticket is with {to_department} already"
    if to_department not in DEPARTMENTS:
        return f"unknown department {to_department!r}"
    return None


def load_policy(path: Path = POLICY_FILE) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), f"cannot read: {exc.strerror}") from None
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str) -> Policy:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, f"not valid TOML: {exc}") from None
    version = document.get("version")
    if not isinstance(version, str) or not version.strip():
        raise PolicyError(source, "needs a version string")
    raw_rules = document.get("rule", [])
    if not isinstance(raw_rules, list) or not raw_rules:
        raise PolicyError(source, "has no [[rule]] entries")
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_rules, 1):
        rule = _parse_rule(raw, source, index)
        if rule.id in seen:
            raise PolicyError(source, "duplicate rule id", rule.id)
        seen.add(rule.id)
        rules.append(rule)
    return _compile(version.strip(), source, tuple(rules))


def _parse_rule(raw: Any, source: str, index: int) -> Rule:
    if not isinstance(raw, dict):
        raise PolicyError(source, f"rule #{index} is not a table")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not rule_id.strip():
        raise PolicyError(source, f"rule #{index} has no id")

    def fail(message: str) -> PolicyError:
        return PolicyError(source, message, rule_id)

    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise fail(f"unknown keys {sorted(unknown)}")
    department = raw.get("department")
    if department not in DEPARTMENTS:
        raise fail(f"unknown department {department!r}")
    if department == SUPERVISION:
        raise fail(f"{SUPERVISION} is never a routing target")
    priority = raw.get("priority", 50)
    if not isinstance(priority, int) or not 0 <= priority <= 1000:
        raise fail("priority must be a whole number from 0 to 1000")
    any_terms, all_terms, none_terms = (
        _terms(raw.get(key, []), key, fail) for key in ("any", "all", "none")
    )
    categories = _choices(raw, "categories", Category, fail)
    origins = _choices(raw, "origins", Origin, fail)
    certified = raw.get("zhongguancun_certified")
    if certified is not None and not isinstance(certified, bool):
        raise fail("zhongguancun_certified must be true or false")
    if not (any_terms or all_terms or categories or origins or certified is not None):
        raise fail("has no condition: it would take every ticket")
    for excluded in none_terms:
        blocked = [t.text for t in all_terms if t.contains(excluded)]
        if blocked:
            raise fail(
                f"can never match: 'none' term {excluded.text!r} is within required "
                f"term {blocked[0]!r}"
            )
    if any_terms and all(any(t.contains(x) for x in none_terms) for t in any_terms):
        raise fail("can never match: every 'any' term contains a 'none' term")
    matter_of = raw.get("matter_of")
    if matter_of is not None:
        if not isinstance(matter_of, list) or not matter_of:
            raise fail("'matter_of' must be a non-empty list of department codes")
        unknown_codes = [code for code in matter_of if code not in DEPARTMENTS]
        if unknown_codes:
            raise fail(f"'matter_of' names unknown departments {unknown_codes}")
        matter_of = frozenset([*matter_of, department])
    return Rule(
        rule_id,
        department,
        priority,
        any_terms,
        all_terms,
        none_terms,
        categories,
        origins,
        certified,
        matter_of,
    )


def _terms(values: Any, key: str, fail: Any) -> tuple[Term, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise fail(f"'{key}' must be a list of strings")
    terms = []
    for value in values:
        term = Term.parse(value)
        if not term.text:
            raise fail(f"empty pattern in '{key}'")
        terms.append(term)
    return tuple(terms)


def _choices(raw: dict[str, Any], key: str, kind: Any, fail: Any) -> frozenset[Any] | None:
    if key not in raw:
        return None
    values = raw[key]
    if not isinstance(values, list) or not values:
        raise fail(f"can never match: '{key}' is empty")
    try:
        return frozenset(kind(value) for value in values)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise fail(f"'{key}' takes {allowed}") from None


def _compile(version: str, source: str, rules: tuple[Rule, ...]) -> Policy:
    terms: dict[str, Term] = {}
    rules_by_term: dict[str, list[Rule]] = {}
    termless: list[Rule] = []
    for rule in rules:
        rule_terms = rule.any + rule.all
        if not rule_terms:
            termless.append(rule)
        for term in rule_terms + rule.none:
            known = terms.setdefault(term.text, term)
            if known != term:
                raise PolicyError(
                    source, f"term {term.text!r} is used both with and without '*'", rule.id
                )
        for term in rule_terms:
            rules_by_term.setdefault(term.text, []).append(rule)
    automaton = ahocorasick.Automaton()
    for text in terms:
        automaton.add_word(text, text)
    if terms:
        automaton.make_automaton()
    return Policy(
        version=version,
        source=source,
        rules=rules,
        _automaton=automaton,
        _terms=terms,
        _rules_by_term={text: tuple(found) for text, found in rules_by_term.items()},
        _termless_rules=tuple(termless),
    )
