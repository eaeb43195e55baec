"""FASTA reader and writer: formats, malformed input, streaming, and a parse-or-FastaFormatError property."""

import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from favor.data import FastaFormatError, FastaRecord, read_fasta, write_fasta

TEXT = ">P1 first protein\nMKT\nAYI\n\n>P2\nacd ef\n>P3\r\nWY\r\n"
EXPECTED = [
    FastaRecord(name="P1", description="first protein", sequence="MKTAYI"),
    FastaRecord(name="P2", description="", sequence="acdef"),
    FastaRecord(name="P3", description="", sequence="WY"),
]


def test_plain_multiline_and_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "x.fasta"
    path.write_text(TEXT)
    assert list(read_fasta(path)) == EXPECTED
    assert list(read_fasta(str(path))) == EXPECTED


def test_gzip_detected_by_magic_not_extension(tmp_path: Path) -> None:
    path = tmp_path / "misnamed.fasta"
    path.write_bytes(gzip.compress(TEXT.encode()))
    assert list(read_fasta(path)) == EXPECTED


def test_open_streams_text_binary_and_gzip() -> None:
    assert list(read_fasta(io.StringIO(TEXT))) == EXPECTED
    assert list(read_fasta(io.BytesIO(TEXT.encode()))) == EXPECTED
    stream = io.BytesIO(gzip.compress(TEXT.encode()))
    assert list(read_fasta(stream)) == EXPECTED
    assert not stream.closed


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("MKT\n>P1\nMK\n", 1, "before the first"),
        ("\n\nMKT\n", 3, "before the first"),
        (">P1\nMK\n>\nMK\n", 3, "empty header"),
        (">P1\nMK\n>   \nMK\n", 3, "empty header"),
        (">P1\n>P2\nMK\n", 1, "no sequence"),
        (">P1\nMK\n>P2\n\n", 3, "no sequence"),
        (">P1\nMK\n>P2\nA\n>P1 again\nMK\n", 5, "duplicate record name 'P1'"),
    ],
)
def test_malformed_names_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = tmp_path / "bad.fasta"
    path.write_text(text)
    with pytest.raises(FastaFormatError) as info:
        list(read_fasta(path))
    assert str(path) in str(info.value) and f"line {line}:" in str(info.value)
    assert fragment in str(info.value)
    assert info.value.line == line and info.value.path == str(path)


def test_skip_empty_and_allow_duplicates() -> None:
    records = list(read_fasta(io.StringIO(">P1\n>P2\nMK\n>P3\n"), skip_empty=True))
    assert [r.name for r in records] == ["P2"]
    records = list(read_fasta(io.StringIO(">P1\nA\n>P1\nC\n"), allow_duplicates=True))
    assert [r.sequence for r in records] == ["A", "C"]


def test_not_utf8_and_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "latin.fasta"
    path.write_bytes(b">P1\nMK\n>P\xe92\nMK\n")
    with pytest.raises(FastaFormatError, match=r"line 3: not UTF-8"):
        list(read_fasta(path))
    truncated = tmp_path / "truncated.fasta.gz"
    data = gzip.compress((">P1\n" + "A" * 50_000 + "\n").encode())
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(FastaFormatError, match="corrupt gzip"):
        list(read_fasta(truncated))


class CountingReader(io.RawIOBase):
    """A non-seekable binary stream that counts the bytes handed out."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        n = min(len(buffer), len(self._data) - self.bytes_read)
        buffer[:n] = self._data[self.bytes_read : self.bytes_read + n]
        self.bytes_read += n
        return n


def test_streaming_reads_only_what_it_needs() -> None:
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)
    lines = [f">S{i}\n{rng.choice(letters, 1000).tobytes().decode()}\n" for i in range(4000)]
    data = gzip.compress("".join(lines).encode(), compresslevel=1)
    assert len(data) > 2_000_000
    reader = CountingReader(data)
    first = next(read_fasta(reader))
    assert first.name == "S0" and len(first.sequence) == 1000
    assert reader.bytes_read < len(data) // 4


def test_write_round_trip(tmp_path: Path) -> None:
    for name in ("out.fasta", "out.fasta.gz"):
        path = tmp_path / name
        assert write_fasta(EXPECTED, path, line_width=4) == 3
        assert list(read_fasta(path)) == EXPECTED
    assert (tmp_path / "out.fasta").read_text().startswith(">P1 first protein\nMKTA\nYI\n>P2\n")
    buffer = io.StringIO()
    write_fasta([("A1", "MK")], buffer)
    assert buffer.getvalue() == ">A1\nMK\n"
    with pytest.raises(ValueError, match="empty sequence"):
        write_fasta([("A1", "")], io.StringIO())


_fasta_alphabet = st.sampled_from([">", "\n", " ", "\r", "\t", "A", "M", "k", "P1", "P2", "\x00", "é", "*"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=60), st.lists(_fasta_alphabet, max_size=40).map("".join)))
def test_any_text_parses_or_raises_fasta_format_error(text: str) -> None:
    for source in (io.StringIO(text), io.BytesIO(text.encode("utf-8", errors="surrogatepass"))):
        try:
            records = list(read_fasta(source))
        except FastaFormatError:
            continue
        for record in records:
            assert record.name and record.sequence
            assert not any(ch.isspace() for ch in record.name + record.sequence)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.binary(max_size=80), st.binary(max_size=80).map(lambda b: b"\x1f\x8b" + b)))
def test_any_bytes_parse_or_raise_fasta_format_error(data: bytes) -> None:
    try:
        list(read_fasta(io.BytesIO(data)))
    except FastaFormatError:
        pass
