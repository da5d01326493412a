"""Small value types shared by every part of the library."""

from __future__ import annotations

import datetime as _dt
import enum
import math
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

import attrs

__all__ = [
    "SECRET_MASK",
    "DeadLetter",
    "Kind",
    "Malformed",
    "OnError",
    "Position",
    "Reason",
    "jsonable",
    "mask_paths",
    "safe_str",
]

Kind: TypeAlias = Literal["map", "filter", "flat_map", "batch"]
"""The four shapes of a stage: 1→1, 1→0/1, 1→n and list→list."""

OnError: TypeAlias = Literal["dead_letter", "skip", "raise"]
"""What a stage does with a record it cannot process."""

Position: TypeAlias = int | str | tuple[Any, ...]
"""Where a record sits in its source: an index, a line number, an offset..."""

KINDS: tuple[Kind, ...] = ("map", "filter", "flat_map", "batch")
ON_ERROR: tuple[OnError, ...] = ("dead_letter", "skip", "raise")

SECRET_MASK = "**********"  # noqa: S105 - the mask shown instead of a secret


def _is_secret(value: Any) -> bool:
    # Duck-typed so that pydantic need not be imported here: SecretStr,
    # SecretBytes and any look-alike expose get_secret_value().
    return callable(getattr(value, "get_secret_value", None))


def _mask(value: Any) -> Any:
    return SECRET_MASK if _is_secret(value) else value


def safe_str(value: Any, limit: int = 500) -> str:
    """
    Return ``str(value)``, never raising and never revealing a secret.

    Args:
        value: Anything, including an exception whose ``__str__`` raises.
        limit: Longest text returned; longer text is cut with an ellipsis.

    Returns:
        A printable string.
    """
    if _is_secret(value):
        return SECRET_MASK
    try:
        text = str(value)
    except Exception:  # a hostile __str__ must not break error handling
        try:
            text = f"<{type(value).__name__} (str() failed)>"
        except Exception:  # pragma: no cover - type names always work
            text = "<unprintable>"
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def mask_paths(data: Any, paths: tuple[tuple[str | int, ...], ...]) -> Any:
    """
    Replace the values at *paths* inside plain JSON *data* with the mask.

    Args:
        data: Plain data (as :func:`jsonable` returns); changed in place.
        paths: Field paths such as ``("login", "password")``.

    Returns:
        *data*.
    """
    for path in paths:
        node = data
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and path and path[-1] in node:
            node[path[-1]] = SECRET_MASK
    return data


def jsonable(value: Any) -> Any:  # noqa: PLR0911 - one branch per kind of value
    """
    Convert *value* to JSON-friendly data, masking secrets.

    Pydantic models, dataclasses, attrs classes, mappings, sequences, dates,
    decimals and UUIDs become plain data; secrets become ``"**********"``;
    anything else becomes its ``str()``.

    Args:
        value: The value to convert.

    Returns:
        Plain JSON data.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if _is_secret(value):
        return SECRET_MASK
    if isinstance(value, DeadLetter | Reason):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # a pydantic model: keep secrets as objects so we mask them
        return jsonable({name: getattr(value, name) for name in type(value).model_fields})
    fields = getattr(type(value), "__dataclass_fields__", None)
    if fields is not None and not isinstance(value, type):
        return jsonable({name: getattr(value, name) for name in fields})
    if attrs.has(type(value)):
        return jsonable(attrs.asdict(value, recurse=False))
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if type(value).__name__ in ("Decimal", "UUID"):
        return str(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            import base64

            return "base64:" + base64.b64encode(value).decode()
    return safe_str(value)


@attrs.frozen
class Reason:
    """
    One problem with one record: where, what, and the offending value.

    Attributes:
        path: Field path inside the record, e.g. ``("flights", 0, "dep_delay")``;
            empty for a problem with the whole record.
        message: What is wrong, in words.
        value: The offending value; secrets are masked, never kept.
        type: A short machine-readable kind (pydantic's error type, or ``"check"``).

    Example:
        >>> str(Reason(("value",), "must be positive", -1))
        'value: must be positive (got -1)'
    """

    path: tuple[str | int, ...]
    message: str
    value: Any = attrs.field(default=None, converter=_mask)
    type: str = "value_error"

    def __str__(self) -> str:
        where = ".".join(map(str, self.path)) if self.path else "record"
        return f"{where}: {self.message} (got {safe_str(self.value, 80)})"

    def to_dict(self) -> dict[str, Any]:
        """Return the reason as JSON-friendly data."""
        return {
            "path": list(self.path),
            "message": self.message,
            "value": jsonable(self.value),
            "type": self.type,
        }


@attrs.frozen
class Malformed:
    """
    A placeholder a source yields for input it could not decode.

    The runner turns it into a failed record (stage ``"<source>"``) with the
    source's position, so broken input never stops a run.

    Attributes:
        raw: The raw text or bytes that could not be decoded (may be cut short).
        message: What is wrong and, where possible, how to fix it.
        error_type: A short name for the kind of problem.
    """

    raw: Any
    message: str
    error_type: str = "MalformedRecord"


@attrs.frozen
class DeadLetter:
    """
    A record that failed, with everything needed to understand and replay it.

    Attributes:
        record: The original record as it came from the source.
        position: Its position in the source.
        stage: Name of the stage that failed it.
        error_type: Name of the exception type.
        message: The error message.
        reasons: One :class:`Reason` per problem (validation failures).
        attempts: How many times the stage was tried.
        run_id: The run that produced this dead letter.
    """

    record: Any
    position: Position | None
    stage: str
    error_type: str
    message: str
    reasons: tuple[Reason, ...] = ()
    attempts: int = 1
    run_id: str = ""
    secret_paths: tuple[tuple[str | int, ...], ...] = attrs.field(default=(), repr=False)
    """Field paths in ``record`` that hold secrets (from the pipeline's validators)."""

    def to_dict(self) -> dict[str, Any]:
        """
        Return the dead letter as JSON-friendly data (secrets masked).

        ``SecretStr`` values are masked, and so are the fields at
        ``secret_paths``: the fields a validator of the pipeline declares as
        secret, even where the original record holds them as plain text.

        Returns:
            A mapping with ``position``, ``stage``, ``error_type``, ``message``,
            ``reasons``, ``attempts``, ``run_id`` and ``record``.
        """
        return {
            "position": jsonable(self.position),
            "stage": self.stage,
            "error_type": self.error_type,
            "message": self.message,
            "reasons": [r.to_dict() for r in self.reasons],
            "attempts": self.attempts,
            "run_id": self.run_id,
            "record": mask_paths(jsonable(self.record), self.secret_paths),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeadLetter:
        """
        Rebuild a dead letter from :meth:`to_dict` output.

        Args:
            data: A mapping as written to a dead-letter file.

        Returns:
            The dead letter.
        """
        pos = data.get("position")
        return cls(
            record=data.get("record"),
            position=tuple(pos) if isinstance(pos, list) else pos,
            stage=str(data.get("stage", "")),
            error_type=str(data.get("error_type", "")),
            message=str(data.get("message", "")),
            reasons=tuple(
                Reason(
                    tuple(r.get("path", ())),
                    str(r.get("message", "")),
                    r.get("value"),
                    str(r.get("type", "value_error")),
                )
                for r in data.get("reasons", ())
            ),
            attempts=int(data.get("attempts", 1)),
            run_id=str(data.get("run_id", "")),
        )
