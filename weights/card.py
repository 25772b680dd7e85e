"""The model card's generated sections: the tables the evaluation scripts write between two
markers of weights/README.md (``<!-- eval:start -->`` ... ``<!-- eval:end -->`` and the like)."""

from __future__ import annotations

from pathlib import Path


def has_section(card: Path, start: str, end: str) -> bool:
    """Whether ``card`` is a readable text file holding one ``start`` ... ``end`` section (checked
    before an evaluation's work, not after it)."""
    try:
        doc = card.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    return doc.count(start) == 1 and end in doc.split(start)[1]


def write_section(card: Path, start: str, end: str, text: str) -> None:
    """Replace what lies between ``start`` and ``end`` in ``card`` with ``text``."""
    head, rest = card.read_text().split(start)
    card.write_text(f"{head}{start}\n{text}{end}{rest.split(end, 1)[1]}")
