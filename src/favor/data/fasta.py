"""Streaming FASTA reading and writing.

``read_fasta`` yields one ``FastaRecord`` at a time and never holds more than the current record in
memory. Gzip input is detected by its magic bytes (``1f 8b``), not by the file name, so a gzipped file
called ``.fasta`` (or an in-memory stream) works too. Sequence lines are joined and every whitespace
character is removed; blank lines are ignored. Residue letters are not checked here: the ``Alphabet``
does that when encoding, naming the record and position.

Every format problem raises ``FastaFormatError`` (a ``ValueError``) naming the file and 1-based line:
sequence data before the first header, an empty header, an empty record (unless ``skip_empty``), a
duplicate record name (unless ``allow_duplicates``), and undecodable (non-UTF-8) bytes.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["FastaFormatError", "FastaRecord", "read_fasta", "write_fasta"]

_GZIP_MAGIC = b"\x1f\x8b"

PathOrFile = str | os.PathLike[str] | IO[str] | IO[bytes]


class FastaFormatError(ValueError):
    """A malformed FASTA file; ``path`` and ``line`` (1-based) say where."""

    def __init__(self, message: str, *, path: str, line: int) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}, line {line}: {message}")


@dataclass(frozen=True)
class FastaRecord:
    """One FASTA record.

    Attributes:
        name: the first whitespace-separated word of the header (the accession), without ``>``.
        description: the rest of the header after the name, stripped ("" when absent).
        sequence: residues of all sequence lines joined, whitespace removed, case kept.
    """

    name: str
    description: str
    sequence: str

    def __len__(self) -> int:
        return len(self.sequence)


def _source_name(source: PathOrFile) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", "<stream>"))


class _PrefixedReader(io.RawIOBase):
    """A read-only raw stream serving ``prefix`` and then the rest of ``stream``.

    Lets us sniff the gzip magic of a non-seekable stream without consuming it; closing this wrapper
    leaves the caller's stream open.
    """

    def __init__(self, prefix: bytes, stream: IO[bytes]) -> None:
        self._prefix = prefix
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        view = memoryview(buffer).cast("B")
        if self._prefix:
            n = min(len(view), len(self._prefix))
            view[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)


def _binary_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Lines of a binary stream, transparently gunzipped when it starts with the gzip magic."""
    head = stream.read(2)
    buffered = io.BufferedReader(_PrefixedReader(head, stream))
    if head == _GZIP_MAGIC:
        yield from gzip.GzipFile(fileobj=buffered, mode="rb")
    else:
        yield from buffered


def _text_lines(source: PathOrFile, where: str) -> Iterator[str]:
    """Decoded lines of a path or an open file (text or binary)."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as fh:
            yield from _decode(_binary_lines(fh), where)
    elif isinstance(source.read(0), str):
        yield from source  # type: ignore[misc]
    else:
        yield from _decode(_binary_lines(source), where)  # type: ignore[arg-type]


def _decode(lines: Iterator[bytes], where: str) -> Iterator[str]:
    lineno = 0
    try:
        for lineno, raw in enumerate(lines, start=1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FastaFormatError(f"not UTF-8 text ({exc.reason})", path=where, line=lineno) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise FastaFormatError(f"corrupt gzip data ({exc})", path=where, line=lineno + 1) from None


def read_fasta(
    source: PathOrFile,
    *,
    skip_empty: bool = False,
    allow_duplicates: bool = False,
) -> Iterator[FastaRecord]:
    """Stream the records of a FASTA file (plain or gzip).

    Args:
        source: a path, or an open file in text or binary mode (binary may be gzipped).
        skip_empty: silently drop records with no residues instead of raising.
        allow_duplicates: allow two records with the same name instead of raising.

    Yields:
        ``FastaRecord`` objects in file order.

    Raises:
        FastaFormatError: naming the file and line of the first problem found.
    """
    where = _source_name(source)
    # name -> header line, to name both lines of a duplicate.
    seen: dict[str, int] = {}
    header: str | None = None
    header_line = 0
    chunks: list[str] = []

    def finish() -> FastaRecord | None:
        assert header is not None
        sequence = "".join(chunks)
        if not sequence and not skip_empty:
            raise FastaFormatError(
                f"record {header.split(maxsplit=1)[0]!r} has no sequence (pass skip_empty=True to skip it)",
                path=where,
                line=header_line,
            )
        if not sequence:
            return None
        parts = header.split(maxsplit=1)
        name = parts[0]
        description = parts[1].strip() if len(parts) > 1 else ""
        return FastaRecord(name=name, description=description, sequence=sequence)

    for lineno, line in enumerate(_text_lines(source, where), start=1):
        if line.startswith(">"):
            if header is not None:
                record = finish()
                if record is not None:
                    yield record
            header = line[1:].strip()
            header_line = lineno
            chunks = []
            if not header:
                raise FastaFormatError("empty header ('>' with no name)", path=where, line=lineno)
            name = header.split(maxsplit=1)[0]
            if not allow_duplicates:
                if name in seen:
                    raise FastaFormatError(
                        f"duplicate record name {name!r} (first seen on line {seen[name]}; "
                        "pass allow_duplicates=True to allow it)",
                        path=where,
                        line=lineno,
                    )
                seen[name] = lineno
            continue
        data = "".join(line.split())
        if not data:
            continue
        if header is None:
            raise FastaFormatError(
                "sequence data before the first '>' header (is this a FASTA file?)", path=where, line=lineno
            )
        chunks.append(data)
    if header is not None:
        record = finish()
        if record is not None:
            yield record


def write_fasta(
    records: Iterable[FastaRecord | tuple[str, str]],
    destination: str | os.PathLike[str] | IO[str],
    *,
    line_width: int | None = None,
) -> int:
    """Write records as FASTA; returns the number written.

    Args:
        records: ``FastaRecord`` objects or ``(name, sequence)`` pairs.
        destination: a path (gzip-compressed when it ends in ``.gz``) or an open text file.
        line_width: wrap sequences at this many characters; ``None`` writes one line per sequence.
    """
    if line_width is not None and line_width < 1:
        raise ValueError(f"write_fasta: line_width must be >= 1 or None, got {line_width}")
    if isinstance(destination, (str, os.PathLike)):
        path = Path(destination)
        if path.suffix == ".gz":
            # mtime=0 keeps gzip output byte-identical between runs.
            with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
                with io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as fh:
                    return _write_records(records, fh, line_width, str(path))
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            return _write_records(records, fh, line_width, str(path))
    return _write_records(records, destination, line_width, _source_name(destination))


def _write_records(
    records: Iterable[FastaRecord | tuple[str, str]], fh: IO[str], line_width: int | None, where: str
) -> int:
    count = 0
    for record in records:
        if isinstance(record, FastaRecord):
            header = f"{record.name} {record.description}".strip()
            sequence = record.sequence
        else:
            header, sequence = record
        if not header or any(ch.isspace() for ch in header.split(maxsplit=1)[0]) or "\n" in header:
            raise ValueError(f"write_fasta({where}): record {count + 1} has an invalid name {header!r}")
        if not sequence:
            raise ValueError(f"write_fasta({where}): record {header!r} has an empty sequence")
        fh.write(f">{header}\n")
        if line_width is None:
            fh.write(sequence + "\n")
        else:
            for start in range(0, len(sequence), line_width):
                fh.write(sequence[start : start + line_width] + "\n")
        count += 1
    return count
