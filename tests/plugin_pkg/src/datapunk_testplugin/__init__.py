"""Example datapunk plugins: no base class, just the protocols' methods."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence


class Upper:
    """A map stage: upper-cases one field of each record."""

    kind = "map"

    def __init__(self, field: str = "record_id", token: Any = None) -> None:
        self.name = f"upper[{field}]"
        self.field = field
        self.token = token  # a SecretStr when configured from a secret option

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        if self.token is not None and self.token.get_secret_value() == "":
            raise ValueError("empty token")
        return {**record, self.field: str(record[self.field]).upper()}


class Countdown:
    """A source: n, n-1, ... 1 as records, positions 0-based."""

    datapunk_kind = "source"

    def __init__(self, start: int = 3) -> None:
        self.name = f"countdown({start})"
        self.start = start

    def read(self) -> Iterator[tuple[int, dict[str, Any]]]:
        for i, n in enumerate(range(self.start, 0, -1)):
            yield i, {"n": n}


class HalfSink:
    """Declares itself a sink but has no close(): the registry must refuse it."""

    datapunk_kind = "sink"

    def write(self, records: Sequence[Any]) -> None:
        pass
