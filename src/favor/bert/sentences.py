"""English sentences from the docstrings of the Python standard library: real text, always offline.

The standard library's ``.py`` files are parsed with `ast` (never imported: no side effects), in sorted
path order, skipping test suites and ``site-packages``. Module, class and function docstrings are split
into paragraphs; paragraphs with code (doctest prompts, indented blocks) are dropped; the rest is split
into sentences, and a sentence is kept when it reads as prose: it starts with a capital letter, ends with a
period, has ``min_words`` to ``max_words`` words, and is mostly letters. Duplicates are dropped.

The exact set depends on the Python version (3.11 here); the count and a hash are printed by the
benchmark so a run can be matched to its text.
"""

from __future__ import annotations

import ast
import inspect
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path

__all__ = ["stdlib_sentences"]

_SKIP_PARTS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_CODE_HINTS = (">>>", "::", "...", "__", "==", "->")


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = (p for p in root.rglob("*.py") if not _SKIP_PARTS.intersection(p.relative_to(root).parts))
    return sorted(files)


def _docstrings(path: Path) -> Iterator[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield inspect.cleandoc(doc)


def _prose_paragraphs(doc: str) -> Iterator[str]:
    for paragraph in re.split(r"\n\s*\n", doc):
        lines = paragraph.splitlines()
        # Indented lines are code, argument tables or continued lists: not prose.
        if any(line.startswith((" ", "\t")) for line in lines):
            continue
        yield " ".join(line.strip() for line in lines)


def _is_prose(sentence: str, min_words: int, max_words: int) -> bool:
    words = sentence.split()
    if not min_words <= len(words) <= max_words:
        return False
    if not (sentence[0].isupper() and sentence.endswith(".")) or any(h in sentence for h in _CODE_HINTS):
        return False
    letters = sum(c.isalpha() or c.isspace() for c in sentence)
    return letters >= 0.9 * len(sentence)


def stdlib_sentences(*, min_words: int = 6, max_words: int = 40, limit: int | None = None) -> list[str]:
    """Prose sentences from standard-library docstrings, deduplicated, in a fixed (file) order.

    ``limit`` stops after that many sentences (the first files only: fast, for tests).
    """
    if min_words < 1 or max_words < min_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words} and {max_words}")
    seen: set[str] = set()
    out: list[str] = []
    for path in _stdlib_files():
        for doc in _docstrings(path):
            for paragraph in _prose_paragraphs(doc):
                for sentence in _SENTENCE_END.split(paragraph):
                    sentence = sentence.strip()
                    if sentence in seen or not _is_prose(sentence, min_words, max_words):
                        continue
                    seen.add(sentence)
                    out.append(sentence)
                    if limit is not None and len(out) >= limit:
                        return out
    return out
