"""The statistical ranker: how likely each department is to own a text.

A linear model over the features of `features.py` and the profile terms found in the text:
each feature's tf-idf value times its learned weight per department, summed, then a softmax
with a fitted temperature gives a calibrated probability per department. Training lives in
`training.py` (it needs scikit-learn); this module only applies a trained model, with numpy,
so the service scores a ticket in a few tens of microseconds and never imports the trainer.

Pure: no I/O.
"""

import io
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import ahocorasick
import numpy as np
import numpy.typing as npt

from services.routing.domain import normalise
from services.routing.features import normalised_features
from services.routing.knowledge import Knowledge

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Scored:
    department: str
    probability: float
    terms: tuple[str, ...]
    """The words that weighed most for this department, most first."""


class TermFinder:
    """Every profile term in a text, in one pass (Aho-Corasick), as `t:` features."""

    def __init__(self, knowledge: Knowledge) -> None:
        self._automaton = ahocorasick.Automaton()
        for entry in knowledge.entries:
            for term in entry.terms:
                self._automaton.add_word(term, term)
        self._automaton.make_automaton()

    def find(self, normalised: str) -> list[str]:
        found = []
        for end, term in self._automaton.iter(normalised):
            if term.isascii() and not _whole_words(normalised, end - len(term) + 1, end):
                continue
            found.append("t:" + term)
        return found


def _whole_words(text: str, start: int, end: int) -> bool:
    before = start == 0 or not text[start - 1].isascii() or not text[start - 1].isalnum()
    after = end + 1 >= len(text) or not text[end + 1].isascii() or not text[end + 1].isalnum()
    return before and after


def text_features(text: str, terms: TermFinder) -> list[str]:
    normalised = normalise(text)  # once: the words and the profile terms are read from it
    return normalised_features(normalised) + terms.find(normalised)


@dataclass(frozen=True)
class Ranker:
    version: str
    departments: tuple[str, ...]
    vocabulary: dict[str, int] = field(repr=False)
    idf: Vector = field(repr=False)
    weights: Vector = field(repr=False)
    """One row per feature, one column per department."""
    bias: Vector = field(repr=False)
    temperature: float
    terms: TermFinder = field(repr=False)
    _readable: list[str | None] = field(init=False, repr=False, compare=False)

    def rank(self, text: str, explain: int = 4) -> list[Scored]:
        """Every department, most probable first; the first ones with the terms that scored."""
        indices, values = self.vectorise(text)
        if indices.size:
            contributions = self.weights[indices] * values[:, None]
            logits = contributions.sum(axis=0) + self.bias
        else:
            contributions = np.zeros((0, len(self.departments)), np.float32)
            logits = self.bias.copy()
        scaled = logits / self.temperature
        exp = np.exp(scaled - scaled.max())
        probabilities = exp / exp.sum()
        order = np.argsort(-probabilities)
        names = self._names(indices)
        ranked = []
        for place, column in enumerate(order):
            terms: tuple[str, ...] = ()
            if place < 3 and indices.size:
                column_contributions = contributions[:, column]
                best = np.argsort(-column_contributions)[: explain * 3]
                readable = [
                    names[i] for i in best if column_contributions[i] > 0 and names[i] is not None
                ]
                terms = tuple(dict.fromkeys(readable))[:explain]
            ranked.append(Scored(self.departments[column], float(probabilities[column]), terms))
        return ranked

    def vectorise(self, text: str) -> tuple[npt.NDArray[np.intp], Vector]:
        """The text as sparse tf-idf: sublinear counts, L2-normalised; unknown features dropped."""
        counts = Counter(
            index
            for name in text_features(text, self.terms)
            if (index := self.vocabulary.get(name)) is not None
        )
        if not counts:
            return np.zeros(0, np.intp), np.zeros(0, np.float32)
        indices = np.fromiter(counts.keys(), np.intp, len(counts))
        tf = np.fromiter((1.0 + math.log(n) for n in counts.values()), np.float32, len(counts))
        values = tf * self.idf[indices]
        return indices, values / np.float32(np.linalg.norm(values))

    def _names(self, indices: npt.NDArray[np.intp]) -> list[str | None]:
        return [self._readable[i] for i in indices]

    def __post_init__(self) -> None:
        readable: list[str | None] = [None] * len(self.vocabulary)
        for name, index in self.vocabulary.items():
            readable[index] = _readable(name)
        object.__setattr__(self, "_readable", readable)


def _readable(feature: str) -> str | None:
    """A feature as a person would read it; None for character n-grams and stems."""
    kind, _, text = feature.partition(":")
    return text if kind in {"t", "w", "e", "b"} else None


def ranker_from_arrays(
    version: str,
    departments: tuple[str, ...],
    vocabulary: dict[str, int],
    idf: Any,
    weights: Any,
    bias: Any,
    temperature: float,
    knowledge: Knowledge,
) -> Ranker:
    return Ranker(
        version=version,
        departments=departments,
        vocabulary=vocabulary,
        idf=np.asarray(idf, np.float32),
        weights=np.ascontiguousarray(weights, np.float32),
        bias=np.asarray(bias, np.float32),
        temperature=float(temperature),
        terms=TermFinder(knowledge),
    )


class ModelError(ValueError):
    """A stored model that cannot be used with these profiles."""


def dump_ranker(ranker: Ranker, knowledge_digest: str) -> bytes:
    """The model as one compressed blob: small enough for one store document (a few MB)."""
    names = [""] * len(ranker.vocabulary)
    for name, index in ranker.vocabulary.items():
        names[index] = name
    meta = {
        "version": ranker.version,
        "departments": list(ranker.departments),
        "temperature": ranker.temperature,
        "knowledge": knowledge_digest,
    }
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
        vocabulary=np.frombuffer("\n".join(names).encode(), np.uint8),
        idf=ranker.idf,
        # Half precision: a weight's fourth digit never changes a ranking, and it halves the blob.
        weights=ranker.weights.astype(np.float16),
        bias=ranker.bias,
    )
    return buffer.getvalue()


def load_ranker(blob: bytes, knowledge: Knowledge) -> Ranker:
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
            meta = json.loads(arrays["meta"].tobytes())
            names = arrays["vocabulary"].tobytes().decode().split("\n")
            idf, weights, bias = arrays["idf"], arrays["weights"], arrays["bias"]
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"not a ranker model: {exc}") from None
    if meta["knowledge"] != knowledge.digest:
        raise ModelError(
            f"model {meta['version']} was trained on profiles {meta['knowledge']}, "
            f"these are {knowledge.digest}"
        )
    return ranker_from_arrays(
        meta["version"],
        tuple(meta["departments"]),
        {name: index for index, name in enumerate(names)},
        idf,
        weights,
        bias,
        meta["temperature"],
        knowledge,
    )
