"""Build the English text corpus bundled in ``src/favor/data/corpora/python_reference.txt`` (deterministic).

    python tools/make_text_corpus.py [--out src/favor/data/corpora/python_reference.txt]

The text is the Python Language Reference and library topic help that CPython ships offline as
``pydoc_data.topics`` (what ``help("if")`` prints): every topic, in sorted order of its name, separated
by a blank line. The few typographic characters are mapped to ASCII (curly quotes to straight quotes,
dashes to "-", the ellipsis to "...") so the whole corpus fits the printable-ASCII vocabulary. The file
shipped with favor was built with CPython 3.11.7; other Python versions ship slightly different text.
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from pathlib import Path

_ASCII = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2026": "...",
    "\u00b0": " degrees",
    "\u00df": "ss",
    "\u00a0": " ",
}


def to_ascii(text: str) -> str:
    """Map typographic characters to ASCII, strip accents, drop anything else that is not ASCII."""
    for char, replacement in _ASCII.items():
        text = text.replace(char, replacement)
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if ch.isascii()).replace("\t", "    ")


def build_corpus() -> str:
    from pydoc_data.topics import topics

    parts = [to_ascii(topics[name]).strip("\n") for name in sorted(topics)]
    return "\n\n".join(parts) + "\n"


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=repo / "src/favor/data/corpora/python_reference.txt")
    args = parser.parse_args()
    text = build_corpus()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="ascii")
    version = ".".join(map(str, sys.version_info[:3]))
    print(f"{args.out}: {len(text):,} characters from pydoc_data.topics of CPython {version}")


if __name__ == "__main__":
    main()
