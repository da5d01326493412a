"""datapunk.io: format detection, reading, writing and round-trips for every format."""

from __future__ import annotations

import gzip
import json
import string
from typing import TYPE_CHECKING, Any

import pydantic
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import datapunk
from datapunk import io as dio

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit

FORMATS = ["csv", "tsv", "jsonl", "json", "parquet"]
SUFFIXES = [f".{f}" for f in FORMATS] + [f".{f}.gz" for f in FORMATS]

# Text with quotes, newlines, delimiters, non-ASCII and empty strings.
TRICKY = st.text(
    alphabet=st.sampled_from(
        list(string.ascii_letters + string.digits)
        + list(",;\t\"'\n\r\\ {}[]")
        + ["é", "ß", "中", "😀", "\u2028"]
    ),
    max_size=20,
)
VALUES = st.one_of(st.none(), TRICKY)
FIELDS = ["id", "text", "note"]


def records_strategy() -> st.SearchStrategy[list[dict[str, Any]]]:
    row = st.fixed_dictionaries(dict.fromkeys(FIELDS, VALUES))
    return st.lists(row, min_size=1, max_size=20)


def roundtrip(tmp: Path, suffix: str, records: list[Any], **read_opts: Any) -> list[Any]:
    path = tmp / f"data{suffix}"
    if path.exists():
        path.unlink()
    sink = dio.write(path)
    sink.write(records)
    sink.close()
    return [r for _, r in dio.read(path, **read_opts).read()]


class TestDetectFormat:
    @pytest.mark.parametrize(
        ("name", "fmt"),
        [
            ("a.csv", "csv"),
            ("a.CSV", "csv"),
            ("a.tsv", "tsv"),
            ("a.jsonl", "jsonl"),
            ("a.ndjson", "jsonl"),
            ("a.json", "json"),
            ("a.parquet", "parquet"),
            ("a.pq", "parquet"),
            ("dir.v2/a.csv.gz", "csv"),
            ("a.jsonl.gz", "jsonl"),
            ("a.txt", None),
            ("a", None),
            ("a.gz", None),
        ],
    )
    def test_suffixes(self, name: str, fmt: str | None) -> None:
        """The format comes from the last suffix, ignoring a trailing .gz."""
        assert fmt == dio.detect_format(name)


class TestRoundTrip:
    @pytest.mark.parametrize("suffix", SUFFIXES)
    @settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(records=records_strategy())
    @example(records=[{"id": "", "text": None, "note": 'a "b", c\nd'}])
    def test_text_records_round_trip(
        self, tmp_path: Path, suffix: str, records: list[dict[str, Any]]
    ) -> None:
        """read(write(records)) returns the records (CSV: an empty string reads back as None)."""
        got = roundtrip(tmp_path, suffix, records)
        if suffix.startswith((".csv", ".tsv")):
            # CSV has no null: an empty field is both "" and None; both read as None.
            want = [{k: (None if v == "" else v) for k, v in r.items()} for r in records]
        else:
            want = records
        assert want == got

    @pytest.mark.parametrize("suffix", [".csv", ".tsv"])
    def test_csv_empty_strings_kept_with_no_null_values(self, tmp_path: Path, suffix: str) -> None:
        """With null_values=() an empty field reads back as the empty string."""
        records = [{"a": "", "b": "x"}]
        assert records == roundtrip(tmp_path, suffix, records, null_values=())

    @pytest.mark.parametrize("suffix", [".jsonl", ".json", ".jsonl.gz", ".json.gz"])
    @settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        records=st.lists(
            st.recursive(
                st.one_of(
                    st.none(),
                    st.booleans(),
                    st.integers(),
                    st.floats(allow_nan=False, allow_infinity=False),
                    TRICKY,
                ),
                lambda inner: st.one_of(
                    st.lists(inner, max_size=3), st.dictionaries(TRICKY, inner, max_size=3)
                ),
                max_leaves=8,
            ),
            max_size=10,
        )
    )
    def test_json_values_round_trip(self, tmp_path: Path, suffix: str, records: list[Any]) -> None:
        """Any JSON value (nested, numbers, booleans, null) survives JSON Lines and JSON arrays."""
        assert records == roundtrip(tmp_path, suffix, records)

    @pytest.mark.parametrize("use_orjson", [True, False])
    def test_orjson_and_stdlib_read_alike(self, tmp_path: Path, use_orjson: bool) -> None:
        """Reading with or without orjson gives the same records, big integers and NaN included."""
        path = tmp_path / "x.jsonl"
        path.write_text('{"big": 123456789012345678901234567890}\n{"n": NaN}\n{"s": "é"}\n')
        got = list(dio.JsonlSource(path, use_orjson=use_orjson).read())
        assert got[0] == (1, {"big": 123456789012345678901234567890})
        assert got[2] == (3, {"s": "é"})
        assert got[1][1]["n"] != got[1][1]["n"]  # NaN

    def test_parquet_columns_are_the_union_of_keys(self, tmp_path: Path) -> None:
        """Records with different keys become columns, missing values null, nothing dropped."""
        got = roundtrip(tmp_path, ".parquet", [{"a": 1}, {"b": "x"}])
        assert [{"a": 1, "b": None}, {"a": None, "b": "x"}] == got


class Out(pydantic.BaseModel):
    record_id: str
    token: pydantic.SecretStr
    value: float


class TestSinks:
    @pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
    def test_models_are_written_with_secrets_masked(self, tmp_path: Path, suffix: str) -> None:
        """Pydantic models become rows/objects; SecretStr values are written masked."""
        rec = Out(record_id="r1", token=pydantic.SecretStr("hunter2"), value=1.5)
        got = roundtrip(tmp_path, suffix, [rec])
        assert "hunter2" not in (tmp_path / f"data{suffix}").read_bytes().decode("utf-8", "replace")
        row = got[0]
        assert row["record_id"] == "r1"
        assert row["token"] == "**********"

    def test_nothing_appears_until_close(self, tmp_path: Path) -> None:
        """A sink writes to a temporary file; the target appears only on close."""
        target = tmp_path / "out.jsonl"
        sink = dio.write(target)
        sink.write([{"a": 1}])
        assert not target.exists()
        sink.close()
        assert target.read_text() == '{"a":1}\n'
        assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]

    @pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet", ".jsonl.gz"])
    def test_abort_leaves_nothing(self, tmp_path: Path, suffix: str) -> None:
        """abort() removes the temporary file and never touches the target."""
        target = tmp_path / f"out{suffix}"
        sink = dio.write(target)
        sink.write([{"a": 1}])
        sink.abort()
        assert list(tmp_path.iterdir()) == []

    def test_abort_keeps_a_previous_output(self, tmp_path: Path) -> None:
        """A failed run leaves the previous complete output as it was."""
        target = tmp_path / "out.jsonl"
        target.write_text('{"old":1}\n')
        sink = dio.write(target)
        sink.write([{"new": 1}])
        sink.abort()
        assert target.read_text() == '{"old":1}\n'

    def test_failed_run_commits_nothing(self, tmp_path: Path) -> None:
        """When a run stops, neither the output nor the dead letters appear."""

        def boom(x: int) -> int:
            if x == 3:
                raise RuntimeError("boom")
            return x

        pipe = datapunk.Pipeline(datapunk.Stage(boom, on_error="raise"))
        with pytest.raises(datapunk.StageError):
            pipe.run(list(range(5)), tmp_path / "o.jsonl", dead_letter=tmp_path / "d.jsonl")
        assert list(tmp_path.iterdir()) == []

    def test_empty_run_writes_empty_files(self, tmp_path: Path) -> None:
        """A run with no records still commits (empty) outputs."""
        datapunk.Pipeline(lambda r: r).run(
            [], tmp_path / "o.json", dead_letter=tmp_path / "d.jsonl"
        )
        assert json.loads((tmp_path / "o.json").read_text()) == []
        assert (tmp_path / "d.jsonl").read_text() == ""

    def test_gzip_output_is_gzip(self, tmp_path: Path) -> None:
        """A .gz target is gzip-compressed."""
        datapunk.Pipeline(lambda r: r).run([{"a": 1}], tmp_path / "o.jsonl.gz")
        assert gzip.decompress((tmp_path / "o.jsonl.gz").read_bytes()) == b'{"a":1}\n'

    def test_csv_extra_field_is_a_sink_error(self, tmp_path: Path) -> None:
        """A record with a column the header lacks stops the run with a SinkError naming it."""
        with pytest.raises(datapunk.SinkError, match=r"field\(s\) \['b'\].*give fieldnames="):
            datapunk.Pipeline(lambda r: r).run([{"a": 1}, {"a": 2, "b": 3}], tmp_path / "o.csv")
        assert list(tmp_path.iterdir()) == []

    def test_csv_non_mapping_is_a_sink_error(self, tmp_path: Path) -> None:
        """A scalar cannot be a CSV row."""
        with pytest.raises(datapunk.SinkError, match="cannot write a int as a CSV row"):
            datapunk.Pipeline(lambda r: r).run([1], tmp_path / "o.csv")

    def test_dead_letter_file_has_everything(self, tmp_path: Path) -> None:
        """Each dead letter is one JSON object with position, stage, error, reasons and record."""
        v = datapunk.Validate(Out)
        datapunk.Pipeline(v).run(
            [{"record_id": "a", "token": "s3cret", "value": "x"}],
            tmp_path / "o.jsonl",
            dead_letter=tmp_path / "d.jsonl",
        )
        (line,) = (tmp_path / "d.jsonl").read_text().splitlines()
        dl = json.loads(line)
        assert {"position", "stage", "error_type", "message", "reasons", "record"} <= set(dl)
        assert dl["position"] == 0
        assert dl["stage"] == "validate[Out]"
        assert dl["reasons"][0]["path"] == ["value"]

    def test_memory_sink_commits_on_close(self) -> None:
        """MemorySink holds records pending until close; abort drops them."""
        sink: dio.MemorySink[int] = dio.MemorySink()
        datapunk.Pipeline(lambda r: r).run(dio.MemorySource([1, 2]), sink)
        assert sink.records == [1, 2]
        other: dio.MemorySink[int] = dio.MemorySink()
        other.write([1])
        other.abort()
        assert other.records == []


class TestOptions:
    def test_unknown_option_is_named(self, tmp_path: Path) -> None:
        """An option a format does not have is a ConfigurationError listing the valid ones."""
        p = tmp_path / "a.csv"
        p.write_text("a\n1\n")
        with pytest.raises(datapunk.ConfigurationError, match=r"no option\(s\) \['delimeter'\]"):
            dio.read(p, delimeter=";")

    def test_format_override(self, tmp_path: Path) -> None:
        """format= reads a file whatever its suffix."""
        p = tmp_path / "a.txt"
        p.write_text('{"a": 1}\n')
        assert list(dio.read(p, format="jsonl").read()) == [(1, {"a": 1})]

    def test_unknown_format_name(self, tmp_path: Path) -> None:
        """An unknown format= is a ConfigurationError."""
        with pytest.raises(datapunk.ConfigurationError, match="unknown format 'xml'"):
            dio.read(tmp_path / "a.xml", format="xml")

    @pytest.mark.parametrize("bad", [0, -1, True, "1"])
    def test_max_line_bytes_checked(self, tmp_path: Path, bad: Any) -> None:
        """max_line_bytes must be a positive int."""
        p = tmp_path / "a.jsonl"
        p.write_text("{}\n")
        with pytest.raises(datapunk.ConfigurationError, match="max_line_bytes"):
            dio.read(p, max_line_bytes=bad)

    def test_null_values_as_string_rejected(self, tmp_path: Path) -> None:
        """null_values='NA' (a string, not a list) is a clear mistake."""
        p = tmp_path / "a.csv"
        p.write_text("a\n1\n")
        with pytest.raises(datapunk.ConfigurationError, match=r"write \['NA'\]"):
            dio.read(p, null_values="NA")

    def test_tsv_and_custom_delimiter(self, tmp_path: Path) -> None:
        """TSV uses tabs; delimiter= sets any one-character separator."""
        p = tmp_path / "a.csv"
        p.write_text("a;b\n1;2\n")
        assert list(dio.read(p, delimiter=";").read()) == [(2, {"a": "1", "b": "2"})]

    def test_fieldnames_for_headerless_csv(self, tmp_path: Path) -> None:
        """fieldnames= reads a file without a header row; positions still count every line."""
        p = tmp_path / "a.csv"
        p.write_text("1,2\n3,4\n")
        assert list(dio.read(p, fieldnames=["x", "y"]).read()) == [
            (1, {"x": "1", "y": "2"}),
            (2, {"x": "3", "y": "4"}),
        ]

    def test_latin1_encoding(self, tmp_path: Path) -> None:
        """encoding= decodes other encodings."""
        p = tmp_path / "a.csv"
        p.write_bytes("name\ncaf\xe9\n".encode("latin-1"))
        assert list(dio.read(p, encoding="latin-1").read()) == [(2, {"name": "café"})]

    def test_repr_and_module(self, tmp_path: Path) -> None:
        """Public classes report datapunk.io as their module."""
        p = tmp_path / "a.jsonl"
        p.write_text("")
        src = dio.read(p)
        assert type(src).__module__ == "datapunk.io"
        assert repr(src) == f"JsonlSource({str(p)!r})"

    def test_parquet_missing_pyarrow_message(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Without pyarrow, Parquet says which extra to install."""
        import builtins

        real = builtins.__import__

        def fake(name: str, *a: Any, **k: Any) -> Any:
            if name.startswith("pyarrow"):
                raise ImportError(name)
            return real(name, *a, **k)

        monkeypatch.setattr(builtins, "__import__", fake)
        with pytest.raises(datapunk.ConfigurationError, match=r"pip install datapunk\[parquet\]"):
            dio.write(tmp_path / "a.parquet")


def test_import_datapunk_io_loads_no_heavy_modules() -> None:
    """Importing datapunk.io loads neither pyarrow nor orjson nor yaml."""
    import subprocess
    import sys

    code = (
        "import sys, datapunk.io; "
        "print(sorted(m for m in ('pyarrow','orjson','yaml','ijson') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class TestJsonWriters:
    @pytest.mark.parametrize("use_orjson", [True, False])
    def test_orjson_and_stdlib_write_alike(self, use_orjson: bool) -> None:
        """Both writers give the same JSON: NaN as null, big ints exact, keys as strings."""
        import datetime as dt
        import uuid

        from datapunk.io._jsonl import dumps_function

        dumps = dumps_function(use_orjson)
        rec = {
            "nan": float("nan"),
            "inf": [float("inf")],
            "big": 2**70,
            "keys": {1: "a"},
            "when": dt.date(2024, 1, 2),
            "id": uuid.UUID(int=1),
            "secret": pydantic.SecretStr("x"),
            "text": "é\n",
        }
        assert json.loads(dumps(rec)) == {
            "nan": None,
            "inf": [None],
            "big": 2**70,
            "keys": {"1": "a"},
            "when": "2024-01-02",
            "id": "00000000-0000-0000-0000-000000000001",
            "secret": "**********",
            "text": "é\n",
        }

    def test_lone_surrogate_is_escaped(self) -> None:
        """A lone surrogate (not encodable as UTF-8) is written as a JSON escape and reads back."""
        from datapunk.io._jsonl import dumps_function

        for use in (True, False):
            assert json.loads(dumps_function(use)({"s": "\ud800"})) == {"s": "\ud800"}


class TestJsonlChunks:
    def test_a_read_failure_delivers_what_was_read_then_names_the_position(
        self, tmp_path, monkeypatch
    ):
        """An I/O error mid-file: earlier records are delivered, then a SourceError."""
        import datapunk.io._jsonl as jsonl

        path = tmp_path / "in.jsonl"
        path.write_text("".join(f"{i}\n" for i in range(10)))
        real = jsonl.iter_lines

        def failing(f: Any, limit: int, *, bom: bool = True) -> Any:
            for n, raw, oversize in real(f, limit, bom=bom):
                if n == 8:
                    raise OSError(5, "Input/output error")
                yield n, raw, oversize

        monkeypatch.setattr(jsonl, "iter_lines", failing)
        out: list[Any] = []
        with pytest.raises(datapunk.SourceError, match=r"OSError.*after position 7"):
            datapunk.Pipeline(lambda x: x).run(path, out, chunk_size=5)
        assert out == list(range(7))

    def test_chunks_match_read(self, tmp_path):
        """The chunked fast path gives what read() gives: values, positions, failures."""
        path = tmp_path / "in.jsonl"
        path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n{bad\n\xef\xbb\xbf2\n' + b"9" * 25 + b"\n")
        source = datapunk.io.JsonlSource(path, max_line_bytes=20)
        pairs = [(p, repr(r)) for p, r in source.read()]
        chunked = [
            (p, repr(r))
            for ps, rs, _ in source._read_chunks(2)
            for p, r in zip(ps, rs, strict=True)
        ]
        assert chunked == pairs
