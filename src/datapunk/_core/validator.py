"""Validators: turn untrusted records into trusted ones, or say precisely why not."""

from __future__ import annotations

import functools
import types
import typing
from functools import cache, lru_cache
from typing import Any, TypeVar, final, overload

from datapunk._core.errors import ConfigurationError, DataProcessingError, ValidationError
from datapunk._core.stage import Stage
from datapunk._core.types import OnError, Reason, safe_str

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["Validate", "Validator", "check"]

In = TypeVar("In", contravariant=True)  # noqa: PLC0105
Out = TypeVar("Out", covariant=True)  # noqa: PLC0105
T = TypeVar("T")
C = TypeVar("C")


class Validator(Stage[In, Out]):
    """
    A stage that checks records: the trusted record, or precisely why not.

    A validator returns the trusted record or raises
    :class:`datapunk.ValidationError` with one :class:`datapunk.Reason` per problem.

    Validators combine with ``&``: ``a & b`` runs both and reports every
    failing reason, not only the first. With ``warn=True`` a failing record
    passes on unchanged and the run counts a warning instead of a failure.

    Args:
        fn: record → trusted record; raises :class:`datapunk.ValidationError`.
        name: Name in reports and dead letters.
        warn: Let failing records pass, counting a warning.
        on_error: Error policy for failing records (when not ``warn``).
        transforms: Whether *fn* returns a new object (as a model does) rather
            than the record it was given (as a rule does).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("transforms",)

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        name: str | None = None,
        warn: bool = False,
        on_error: OnError | None = None,
        transforms: bool = True,
    ) -> None:
        super().__init__(fn, kind="map", name=name, on_error=on_error)
        self.warn = warn
        self.transforms = transforms

    def validate(self, record: In) -> Out:
        """
        Validate one record.

        Args:
            record: The untrusted record.

        Returns:
            The trusted record (for a model, the validated model instance).

        Raises:
            ValidationError: With one reason per problem.
        """
        try:
            return typing.cast("Out", self.fn(record))
        except Exception as exc:
            if self._convert is not None:
                raise self._convert(exc) from None
            raise

    def __and__(self, other: Validator[Out, C]) -> Validator[In, C]:
        """Combine: run both validators and report every failing reason."""
        return _All(self, other)


class _All(Validator[Any, Any]):
    """``a & b``: every part runs (unless a transforming part failed first)."""

    __slots__ = ("parts",)
    parts: tuple[Validator[Any, Any], ...]

    def __init__(self, *parts: Validator[Any, Any]) -> None:
        flat: list[Validator[Any, Any]] = []
        for part in parts:
            if not isinstance(part, Validator):
                raise ConfigurationError(
                    f"& combines validators; got {type(part).__name__} {part!r:.60}"
                )
            if part.warn:
                raise ConfigurationError(
                    f"the warn-only validator {part.name!r} cannot be combined with &: its "
                    "failures would fail the record. Add it as a stage of its own instead: "
                    "strict_validator | warn_validator"
                )
            flat.extend(part.parts if isinstance(part, _All) else (part,))
        self.parts = tuple(flat)
        super().__init__(
            self._run,
            name=" & ".join(p.name for p in self.parts),
            transforms=any(p.transforms for p in self.parts),
        )
        self._convert = _convert_any

    def _run(self, record: Any) -> Any:
        value = record
        reasons: list[Reason] = []
        broken = False
        for part in self.parts:
            if broken:
                # After a failed transform the value's type is unknown: later
                # parts expect the transformed value, so they cannot run.
                break
            try:
                result = part.validate(value)
            except ValidationError as err:
                reasons.extend(err.reasons)
                broken = part.transforms
                continue
            if part.transforms:
                value = result
        if reasons:
            raise ValidationError(reasons=reasons)
        return value


def _convert_any(exc: Exception) -> DataProcessingError:
    if isinstance(exc, DataProcessingError):
        return exc
    return ValidationError(reasons=[Reason((), safe_str(exc), None, type(exc).__name__)])


# ------------------------------------------------------------------- Validate
def _secret_types() -> tuple[type, ...]:
    import pydantic

    return (pydantic.SecretStr, pydantic.SecretBytes)


def _unwrap(tp: Any) -> Iterator[Any]:
    """Yield the concrete types inside Optional/Union/Annotated."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        yield from _unwrap(typing.get_args(tp)[0])
    elif origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(tp):
            yield from _unwrap(arg)
    else:
        yield tp


@lru_cache(maxsize=4096)
def _is_secret_path(tp: Any, loc: tuple[str | int, ...]) -> bool:
    """Whether *loc* inside a value of type *tp* is (or is inside) a secret."""
    secret = _secret_types()
    current = [tp]
    for key in loc:
        nxt: list[Any] = []
        for t in current:
            for u in _unwrap(t):
                if isinstance(u, type) and issubclass(u, secret):
                    return True
                nxt.extend(_child_types(u, key))
        if not nxt:
            return False
        current = nxt
    # The value at *loc* may be a whole model or container (a model-level
    # validator fails with loc=()): mask it if a secret can be anywhere inside.
    seen: set[int] = set()
    return any(_contains_secret(t, secret, seen) for t in current)


def _contains_secret(tp: Any, secret: tuple[type, ...], seen: set[int]) -> bool:
    """Whether a value of type *tp* is, or may hold, a secret."""
    if id(tp) in seen:
        return False
    seen.add(id(tp))
    for u in _unwrap(tp):
        if isinstance(u, type) and issubclass(u, secret):
            return True
        fields = getattr(u, "model_fields", None)
        if isinstance(fields, dict):
            children = [f.annotation for f in fields.values()]
        else:
            try:
                children = list(typing.get_type_hints(u).values()) if isinstance(u, type) else []
            except Exception:
                children = []
            children += [a for a in typing.get_args(u) if a is not ...]
        if any(_contains_secret(c, secret, seen) for c in children):
            return True
    return False


def _child_types(tp: Any, key: str | int) -> list[Any]:
    fields = getattr(tp, "model_fields", None)
    if isinstance(fields, dict):
        field = fields.get(key) if isinstance(key, str) else None
        if field is None:
            field = next((f for f in fields.values() if f.alias == key), None)
        return [field.annotation] if field is not None else []
    hints: dict[str, Any] = {}
    if isinstance(tp, type):
        try:
            hints = typing.get_type_hints(tp)
        except Exception:
            hints = {}
    if hints and isinstance(key, str):
        return [hints[key]] if key in hints else []
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (list, set, frozenset) or (origin is tuple and len(args) == 2 and args[1] is ...):  # noqa: PLR2004
        return [args[0]]
    if origin is tuple:
        return [args[key]] if isinstance(key, int) and key < len(args) else list(args)
    if origin is dict:
        return [args[1]]
    return []


def _secret_fields(tp: Any, depth: int = 0) -> tuple[tuple[str | int, ...], ...]:
    """Paths of the fields of *tp* typed as secrets (nested models included)."""
    if depth > 4:  # noqa: PLR2004 - deep enough for real models, safe for recursive ones
        return ()
    secret = _secret_types()
    fields = getattr(tp, "model_fields", None)
    names: list[tuple[list[str], Any]] = []
    if isinstance(fields, dict):
        for name, field in fields.items():
            keys = [name] + ([field.alias] if field.alias and field.alias != name else [])
            names.append((keys, field.annotation))
    elif isinstance(tp, type):
        try:
            hints = typing.get_type_hints(tp)
        except Exception:
            hints = {}
        names = [([name], hint) for name, hint in hints.items()]
    paths: list[tuple[str | int, ...]] = []
    for keys, annotation in names:
        for u in _unwrap(annotation):
            if isinstance(u, type) and issubclass(u, secret):
                paths.extend((k,) for k in keys)
            elif isinstance(u, type) and (
                hasattr(u, "model_fields") or hasattr(u, "__dataclass_fields__")
            ):
                inner = _secret_fields(u, depth + 1)
                paths.extend((k, *p) for k in keys for p in inner)
    return tuple(dict.fromkeys(paths))


@cache
def _adapter(tp: Any) -> Any:
    import pydantic

    return pydantic.TypeAdapter(tp)


@final
class Validate(Validator[Any, T]):
    """
    Validate records against a type with pydantic.

    Accepts a pydantic model, a dataclass, a ``TypedDict``, or any type that
    :class:`pydantic.TypeAdapter` accepts. Dicts and JSON-like values are
    validated (and coerced the way pydantic does, unless ``strict=True``).
    Every problem becomes one :class:`datapunk.Reason` with the field path as
    a tuple (``("flights", 0, "dep_delay")``); the values of secret fields are
    never kept.

    Args:
        tp: The type records must have.
        name: Name in reports (default: ``validate[TypeName]``).
        warn: Let invalid records pass unchanged, counting a warning.
        on_error: Error policy for invalid records (when not ``warn``).
        strict: Use pydantic's strict mode (no coercion).

    Raises:
        ConfigurationError: If pydantic cannot build a validator for *tp*.

    Example:
        >>> import pydantic, datapunk
        >>> class Point(pydantic.BaseModel):
        ...     x: int
        ...     y: int
        >>> v = datapunk.Validate(Point)
        >>> v({"x": 1, "y": "2"})
        Point(x=1, y=2)
        >>> try:
        ...     v({"x": "one"})
        ... except datapunk.ValidationError as err:
        ...     [r.path for r in err.reasons]
        [('x',), ('y',)]

    .. versionadded:: 0.1.0
    """

    __slots__ = ("secret_paths", "strict", "type")

    @overload
    def __init__(
        self,
        tp: type[T],
        *,
        name: str | None = ...,
        warn: bool = ...,
        on_error: OnError | None = ...,
        strict: bool | None = ...,
    ) -> None: ...
    @overload
    def __init__(
        self: Validate[Any],
        tp: Any,
        *,
        name: str | None = ...,
        warn: bool = ...,
        on_error: OnError | None = ...,
        strict: bool | None = ...,
    ) -> None: ...
    def __init__(
        self,
        tp: Any,
        *,
        name: str | None = None,
        warn: bool = False,
        on_error: OnError | None = None,
        strict: bool | None = None,
    ) -> None:
        import pydantic

        self.type = tp
        self.strict = strict
        try:
            if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
                if not tp.__pydantic_complete__:
                    tp.model_rebuild(raise_errors=True)
                core = tp.__pydantic_validator__
            else:
                core = _adapter(tp).validator
        except (
            pydantic.PydanticSchemaGenerationError,
            pydantic.PydanticUserError,
            TypeError,
            NameError,
        ) as exc:
            raise ConfigurationError(
                f"cannot validate against {tp!r}: {exc}. Pass a pydantic model, dataclass, "
                "TypedDict or another type pydantic accepts",
                details={"type": repr(tp)},
            ) from exc
        # The core validator's bound method is called straight from the fused
        # loop: no Python frame of ours on the hot path.
        chosen: Callable[[Any], Any] = (
            core.validate_python
            if strict is None
            else functools.partial(core.validate_python, strict=strict)
        )

        type_name = getattr(tp, "__name__", None) or repr(tp)
        super().__init__(
            chosen,
            name=name or f"validate[{type_name}]",
            warn=warn,
            on_error=on_error,
            transforms=True,
        )
        self._convert = self._to_error
        self.secret_paths = _secret_fields(tp)

    def _to_error(self, exc: Exception) -> DataProcessingError:
        import pydantic

        if isinstance(exc, DataProcessingError):
            return exc
        if not isinstance(exc, pydantic.ValidationError):
            return _convert_any(exc)
        reasons = []
        for err in exc.errors(include_url=False):
            loc = tuple(err.get("loc", ()))
            kind = str(err.get("type", "value_error"))
            value = None if kind == "missing" else err.get("input")
            if value is not None and _is_secret_path(self.type, loc):
                value = _MASKED
            reasons.append(Reason(loc, str(err.get("msg", "")), value, kind))
        return ValidationError(reasons=reasons)


class _Masked:
    def __repr__(self) -> str:
        return "'**********'"

    def get_secret_value(self) -> str:  # makes Reason mask it
        return "**********"


_MASKED = _Masked()


# ---------------------------------------------------------------------- check
def check(
    predicate: Callable[[T], Any],
    message: str,
    *,
    field: str | tuple[str | int, ...] | None = None,
    name: str | None = None,
    warn: bool = False,
    on_error: OnError | None = None,
) -> Validator[T, T]:
    """
    Make a validator from a rule: *predicate* must be true for a valid record.

    Args:
        predicate: record → truthy when the record is valid. If it raises, the
            record is invalid and the exception's message becomes the reason.
        message: What is wrong when the predicate is false.
        field: The field the rule is about (a name or a path tuple); the
            reason then carries that path and the field's value.
        name: Name in reports (default: the message).
        warn: Let failing records pass, counting a warning.
        on_error: Error policy for failing records (when not ``warn``).

    Returns:
        A :class:`Validator` that returns the record unchanged when it passes.

    Example:
        >>> import datapunk
        >>> v = datapunk.check(lambda r: r["age"] >= 0, "age must be >= 0", field="age")
        >>> try:
        ...     v({"age": -3})
        ... except datapunk.ValidationError as err:
        ...     print(err.reasons[0])
        age: age must be >= 0 (got -3)
    """
    if not callable(predicate):
        raise ConfigurationError(
            f"check() needs a callable predicate, got {type(predicate).__name__}"
        )
    path: tuple[str | int, ...] = (
        () if field is None else (field,) if isinstance(field, str) else tuple(field)
    )

    def _value(record: Any) -> Any:
        value = record
        for key in path:
            try:
                value = value[key] if hasattr(value, "__getitem__") else getattr(value, str(key))
            except (KeyError, IndexError, TypeError, AttributeError):
                return None
        return value

    def rule(record: Any) -> Any:
        try:
            ok = predicate(record)
        except Exception as exc:
            raise ValidationError(
                reasons=[
                    Reason(
                        path,
                        f"{message} ({type(exc).__name__}: {safe_str(exc, 200)})",
                        _value(record),
                        "check",
                    )
                ]
            ) from exc
        if not ok:
            raise ValidationError(
                reasons=[Reason(path, message, _value(record) if path else None, "check")]
            )
        return record

    validator: Validator[T, T] = Validator(
        rule, name=name or message, warn=warn, on_error=on_error, transforms=False
    )
    return validator
