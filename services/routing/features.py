"""What the ranker sees of a text: words, character pairs and triples, and English stems.

Chinese has no spaces, so a Chinese run is cut into words by jieba's dictionary (rjieba, the
Rust port, ships the dictionary inside the wheel), and its character pairs and triples are
kept too: they catch what the dictionary cuts wrongly or does not know (new compounds, place
names, typos). An English run gives its words, its word pairs and a crude five-letter stem, so
that "polluting", "pollution" and "polluted" meet. Digits and punctuation carry no department.

Pure: no I/O.
"""

import re

import rjieba

from services.routing.domain import normalise

_RUNS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[a-z][a-z'-]*[a-z]|[a-z]")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "please",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "too",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)
_STEM = 5


def features(text: str) -> list[str]:
    """The feature names of a text, with repeats (the ranker counts them)."""
    return normalised_features(normalise(text))


def normalised_features(normalised: str) -> list[str]:
    """`features` of a text already normalised, for a caller that needs the normalised text too."""
    out: list[str] = []
    previous_word: str | None = None
    for match in _RUNS.finditer(normalised):
        run = match.group()
        if run[0] >= "\u3400":
            previous_word = None
            out += ["w:" + word for word in rjieba.cut(run, False) if len(word) > 1]
            out += ["c:" + run[i : i + 2] for i in range(len(run) - 1)]
            out += ["c:" + run[i : i + 3] for i in range(len(run) - 2)]
            if len(run) == 1:
                out.append("c:" + run)
            continue
        if run in _STOPWORDS:
            previous_word = None
            continue
        out.append("e:" + run)
        if len(run) > _STEM:
            out.append("s:" + run[:_STEM])
        if previous_word is not None:
            out.append(f"b:{previous_word} {run}")
        previous_word = run
    return out
