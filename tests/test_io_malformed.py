"""datapunk.io: every kind of bad input is a failed record with a position, or a SourceError."""

from __future__ import annotations

import gzip
import json
import os
from typing import TYPE_CHECKING, Any

import pytest

import datapunk
from datapunk import io as dio

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit


def run(path: Path, **opts: Any) -> tuple[datapunk.RunReport, list[Any], list[datapunk.DeadLetter]]:
    out: list[Any] = []
    dead: list[datapunk.DeadLetter] = []
    report = datapunk.Pipeline(lambda r: r).run(
        dio.read(path, **opts), out, dead_letter=dead.append
    )
    assert report.records_in == len(out) + len(dead)  # nothing lost
    return report, out, dead


class TestCsv:
    def test_bom_is_stripped(self, tmp_path: Path) -> None:
        """A UTF-8 BOM is not part of the first column's name."""
        p = tmp_path / "a.csv"
        p.write_bytes(b"\xef\xbb\xbfid,v\n1,2\n")
        _, out, dead = run(p)
        assert out == [{"id": "1", "v": "2"}]
        assert dead == []

    def test_ragged_rows(self, tmp_path: Path) -> None:
        """Rows with too few or too many fields fail at their line; the rest is read."""
        p = tmp_path / "a.csv"
        p.write_text("a,b\n1,2\n3\n4,5,6\n7,8\n")
        _, out, dead = run(p)
        assert out == [{"a": "1", "b": "2"}, {"a": "7", "b": "8"}]
        assert [(d.position, d.stage, d.error_type, d.record) for d in dead] == [
            (3, "<source>", "RaggedRow", "3"),
            (4, "<source>", "RaggedRow", "4,5,6"),
        ]
        assert dead[0].message.startswith("line 3 has 1 field(s) but the header has 2")

    def test_invalid_utf8(self, tmp_path: Path) -> None:
        """An undecodable line fails at its line number, naming the byte and column."""
        p = tmp_path / "a.csv"
        p.write_bytes(b"a,b\n1,2\nx,\xff\n3,4\n")
        _, out, dead = run(p)
        assert out == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]
        (d,) = dead
        assert (d.position, d.error_type) == (3, "UnicodeDecodeError")
        assert "byte(s) 0xff at column 3" in d.message
        assert d.record == "x,\ufffd"

    def test_positions_of_multiline_rows(self, tmp_path: Path) -> None:
        """A row spanning lines has the position of its first line; later rows stay exact."""
        p = tmp_path / "a.csv"
        p.write_text('a,b\n"x\ny\nz",1\n2,3\n\n4,5\n')
        _, out, _ = run(p)
        report = datapunk.Pipeline(lambda r: r).run(dio.read(p), [])
        assert report.records_in == 3
        assert [pos for pos, _ in dio.read(p).read()] == [2, 5, 7]
        assert out[0] == {"a": "x\ny\nz", "b": "1"}

    def test_oversize_line(self, tmp_path: Path) -> None:
        """A line over max_line_bytes fails at its line without being held whole."""
        p = tmp_path / "a.csv"
        p.write_text("a\n" + "x" * 5000 + "\nok\n")
        _, out, dead = run(p, max_line_bytes=100)
        assert out == [{"a": "ok"}]
        assert [(d.position, d.error_type) for d in dead] == [(3 - 1, "LineTooLong")]
        assert "max_line_bytes=100" in dead[0].message

    def test_null_values(self, tmp_path: Path) -> None:
        """Listed null values become None; others stay text."""
        p = tmp_path / "a.csv"
        p.write_text("a,b,c\nNA,,x\n")
        _, out, _ = run(p, null_values=["NA", ""])
        assert out == [{"a": None, "b": None, "c": "x"}]

    def test_duplicate_header_is_a_source_error(self, tmp_path: Path) -> None:
        """A header naming a column twice cannot make dicts: SourceError naming the columns."""
        p = tmp_path / "a.csv"
        p.write_text("a,a\n1,2\n")
        with pytest.raises(datapunk.SourceError, match=r"repeats column\(s\) \['a'\]"):
            datapunk.Pipeline(lambda r: r).run(p, [])

    def test_bad_header_encoding_is_a_source_error(self, tmp_path: Path) -> None:
        """An undecodable header row stops the run before any output."""
        p = tmp_path / "a.csv"
        p.write_bytes(b"a,\xff\n1,2\n")
        with pytest.raises(datapunk.SourceError, match="header row"):
            datapunk.Pipeline(lambda r: r).run(p, tmp_path / "o.jsonl")
        assert not (tmp_path / "o.jsonl").exists()

    def test_empty_file(self, tmp_path: Path) -> None:
        """An empty file has no records."""
        p = tmp_path / "a.csv"
        p.write_text("")
        assert run(p)[1] == []

    def test_field_larger_than_csv_limit(self, tmp_path: Path) -> None:
        """A field over the csv module's limit fails its row; the next rows are read."""
        p = tmp_path / "a.csv"
        p.write_text('a\n"' + "x" * 200_000 + '"\nok\n')
        _, out, dead = run(p)
        assert out == [{"a": "ok"}]
        assert [(d.position, d.error_type) for d in dead] == [(2, "CsvError")]


class TestJsonl:
    def test_each_malformed_class(self, tmp_path: Path) -> None:
        """Broken JSON, invalid UTF-8 and oversize lines fail at their lines; blanks are skipped."""
        p = tmp_path / "a.jsonl"
        p.write_bytes(
            b'\xef\xbb\xbf{"a": 1}\n{"a": \n\xff\xfe\n\n' + b'"' + b"x" * 300 + b'"\n{"a": 2}\n'
        )
        _, out, dead = run(p, max_line_bytes=100)
        assert out == [{"a": 1}, {"a": 2}]
        assert [(d.position, d.error_type) for d in dead] == [
            (2, "JSONDecodeError"),
            (3, "UnicodeDecodeError"),
            (5, "LineTooLong"),
        ]
        assert dead[0].record == '{"a": '
        assert "line 2 is not valid JSON" in dead[0].message

    def test_crlf_lines(self, tmp_path: Path) -> None:
        """Windows line endings are fine."""
        p = tmp_path / "a.jsonl"
        p.write_bytes(b'{"a": 1}\r\n{"a": 2}\r\n')
        assert run(p)[1] == [{"a": 1}, {"a": 2}]

    def test_no_final_newline(self, tmp_path: Path) -> None:
        """The last line needs no newline."""
        p = tmp_path / "a.jsonl"
        p.write_bytes(b'{"a": 1}\n{"a": 2}')
        assert run(p)[1] == [{"a": 1}, {"a": 2}]

    def test_corrupt_gzip_mid_file_stops_the_run(self, tmp_path: Path) -> None:
        """A truncated .gz file is a SourceError during the run; no output is committed."""
        p = tmp_path / "a.jsonl.gz"
        data = gzip.compress(b'{"a": 1}\n' * 10_000)
        p.write_bytes(data[: len(data) // 2])
        with pytest.raises(datapunk.SourceError, match=r"a\.jsonl\.gz"):
            datapunk.Pipeline(lambda r: r).run(p, tmp_path / "o.jsonl")
        assert not (tmp_path / "o.jsonl").exists()


class TestJsonArray:
    def test_bad_element_does_not_stop_the_rest(self, tmp_path: Path) -> None:
        """A broken element fails at its index; the following elements are read."""
        p = tmp_path / "a.json"
        p.write_text('[{"a": 1}, {"a": }, "s,]", [1, {"b": [2]}], {"q": "\\"}"}]')
        _, out, dead = run(p)
        assert out == [{"a": 1}, "s,]", [1, {"b": [2]}], {"q": '"}'}]
        assert [(d.position, d.error_type) for d in dead] == [(1, "JSONDecodeError")]

    def test_streams_across_blocks(self, tmp_path: Path) -> None:
        """Elements spanning the reader's internal blocks parse correctly."""
        items = [{"i": i, "s": "x" * (i % 97)} for i in range(5000)]
        p = tmp_path / "a.json"
        p.write_text(json.dumps(items))
        assert run(p)[1] == items

    @pytest.mark.parametrize("shift", range(-3, 4))
    def test_values_cut_by_the_read_buffer(self, tmp_path: Path, shift: int) -> None:
        """A number, literal or string split across two reads of the buffer parses whole."""
        head = '["' + "x" * (65536 - 5 + shift) + '", '
        p = tmp_path / "a.json"
        p.write_text(head + '1234567, true, "abcdef", null]')
        assert run(p)[1] == [head[2:-3], 1234567, True, "abcdef", None]

    def test_truncated_array(self, tmp_path: Path) -> None:
        """A file that ends inside an element fails that element; the earlier ones are kept."""
        p = tmp_path / "a.json"
        p.write_text('[{"a": 1}, {"a": 2')
        _, out, dead = run(p)
        assert out == [{"a": 1}]
        assert [(d.position, d.error_type) for d in dead] == [(1, "JSONDecodeError")]
        assert "ends inside" in dead[0].message

    def test_trailing_garbage(self, tmp_path: Path) -> None:
        """Data after the closing bracket is one failed record."""
        p = tmp_path / "a.json"
        p.write_text("[1, 2] junk")
        _, out, dead = run(p)
        assert out == [1, 2]
        assert [(d.position, d.error_type) for d in dead] == [(2, "JSONDecodeError")]

    def test_oversize_element(self, tmp_path: Path) -> None:
        """An element over max_line_bytes fails without being held; the next one is read."""
        p = tmp_path / "a.json"
        p.write_text('[{"big": "' + "x" * 300_000 + '"}, 7]')
        _, out, dead = run(p, max_line_bytes=1000)
        assert out == [7]
        assert [(d.position, d.error_type) for d in dead] == [(0, "LineTooLong")]

    def test_invalid_utf8_element(self, tmp_path: Path) -> None:
        """An element with bad bytes fails at its index."""
        p = tmp_path / "a.json"
        p.write_bytes(b'["ok", "\xff", 3]')
        _, out, dead = run(p)
        assert out == ["ok", 3]
        assert [(d.position, d.error_type) for d in dead] == [(1, "UnicodeDecodeError")]

    def test_not_an_array_is_one_record(self, tmp_path: Path) -> None:
        """A top-level object is one record at position 0; a BOM is stripped."""
        p = tmp_path / "a.json"
        p.write_bytes(b'\xef\xbb\xbf{"a": [1, 2]}')
        assert run(p)[1] == [{"a": [1, 2]}]

    def test_empty_array_and_empty_file(self, tmp_path: Path) -> None:
        """[] and an empty file have no records."""
        p = tmp_path / "a.json"
        p.write_text(" [ ] ")
        assert run(p)[1] == []
        p.write_text("")
        assert run(p)[1] == []


class TestSourceErrors:
    @pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".parquet"])
    def test_missing_file(self, tmp_path: Path, suffix: str) -> None:
        """A missing file is a SourceError with the path and what to do, before any output."""
        p = tmp_path / f"nope{suffix}"
        with pytest.raises(datapunk.SourceError, match="does not exist: check the path") as info:
            datapunk.Pipeline(lambda r: r).run(p, tmp_path / "o.jsonl")
        assert info.value.path == str(p)
        assert not (tmp_path / "o.jsonl").exists()

    def test_directory(self, tmp_path: Path) -> None:
        """A directory given as the input is a SourceError."""
        d = tmp_path / "d.csv"
        d.mkdir()
        with pytest.raises(datapunk.SourceError, match="is a directory"):
            dio.read(d)

    def test_unknown_suffix(self, tmp_path: Path) -> None:
        """An unknown suffix is a SourceError listing the known ones."""
        p = tmp_path / "a.xml"
        p.write_text("<a/>")
        with pytest.raises(datapunk.SourceError, match=r"cannot tell the format.*\.csv"):
            dio.read(p)

    @pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
    def test_unreadable(self, tmp_path: Path) -> None:
        """A file without read permission is a SourceError."""
        p = tmp_path / "a.csv"
        p.write_text("a\n")
        p.chmod(0)
        with pytest.raises(datapunk.SourceError, match="permission denied"):
            dio.read(p)

    def test_corrupt_parquet(self, tmp_path: Path) -> None:
        """A file that is not Parquet fails when opened, before any output."""
        p = tmp_path / "a.parquet"
        p.write_bytes(b"PAR1 this is not parquet")
        with pytest.raises(datapunk.SourceError, match="not a valid Parquet file"):
            datapunk.Pipeline(lambda r: r).run(p, tmp_path / "o.jsonl")
        assert not (tmp_path / "o.jsonl").exists()

    def test_gz_that_is_not_gzip(self, tmp_path: Path) -> None:
        """A .gz name on an uncompressed file is caught at open."""
        p = tmp_path / "a.csv.gz"
        p.write_text("a\n1\n")
        with pytest.raises(datapunk.SourceError, match="not gzip-compressed"):
            dio.read(p)


class TestSinkErrors:
    def test_missing_directory(self, tmp_path: Path) -> None:
        """An output in a missing directory is a SinkError before anything is read."""
        with pytest.raises(datapunk.SinkError, match="does not exist; create it first"):
            dio.write(tmp_path / "no" / "o.jsonl")

    def test_directory_as_output(self, tmp_path: Path) -> None:
        """A directory given as the output is a SinkError."""
        (tmp_path / "o.jsonl").mkdir()
        with pytest.raises(datapunk.SinkError, match="is a directory"):
            dio.write(tmp_path / "o.jsonl")

    def test_unknown_output_suffix(self, tmp_path: Path) -> None:
        """An unknown output suffix is a SinkError."""
        with pytest.raises(datapunk.SinkError, match="cannot tell the format of output"):
            dio.write(tmp_path / "o.xml")

    def test_parquet_schema_drift(self, tmp_path: Path) -> None:
        """A later row group with a new column is a SinkError naming it; nothing is committed."""
        sink = dio.ParquetSink(tmp_path / "o.parquet", row_group_size=1)
        sink.write([{"a": 1}])
        with pytest.raises(datapunk.SinkError, match=r"field\(s\) \['b'\]"):
            sink.write([{"b": 2}])
        sink.abort()
        assert list(tmp_path.iterdir()) == []


@pytest.mark.security
class TestHostileInput:
    def test_deeply_nested_jsonl_line(self, tmp_path: Path) -> None:
        """A line nested 100,000 deep fails alone instead of crashing the reader."""
        p = tmp_path / "a.jsonl"
        p.write_text("[" * 100_000 + "]" * 100_000 + '\n{"ok": 1}\n')
        _, out, dead = run(p)
        assert out == [{"ok": 1}]
        assert [(d.position, d.error_type) for d in dead] == [(1, "RecursionError")]

    def test_deeply_nested_array_element(self, tmp_path: Path) -> None:
        """The same inside a JSON array: one failed element, the next one read."""
        p = tmp_path / "a.json"
        p.write_text("[" + "[" * 100_000 + "]" * 100_000 + ', {"ok": 1}]')
        _, out, dead = run(p)
        assert out == [{"ok": 1}]
        assert [(d.position, d.error_type) for d in dead] == [(0, "RecursionError")]

    def test_one_huge_line_is_not_held_in_memory(self, tmp_path: Path) -> None:
        """A 50 MB line with max_line_bytes=1 MiB is skipped in pieces (never read whole)."""
        p = tmp_path / "a.jsonl"
        with p.open("wb") as f:
            f.write(b'{"a": "')
            for _ in range(50):
                f.write(b"x" * (1 << 20))
            f.write(b'"}\n{"b": 2}\n')
        _, out, dead = run(p, max_line_bytes=1 << 20)
        assert out == [{"b": 2}]
        assert [(d.position, d.error_type) for d in dead] == [(1, "LineTooLong")]
        assert len(dead[0].record) < 300
