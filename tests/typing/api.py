"""
Type-checked usage of the public API (mypy --strict and pyright strict).

Each ``assert_type`` pins what a checker must infer. The lines marked as
expected errors must keep failing: both checkers report an unneeded ignore
comment as an error, so the typecheck session fails if a checker stops
rejecting them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, assert_type

import pydantic

import datapunk


class A: ...


class B: ...


class C: ...


class X: ...


class Y: ...


def a_to_b(a: A) -> B:
    return B()


def b_to_c(b: B) -> C:
    return C()


def x_to_y(x: X) -> Y:
    return Y()


async def b_to_c_async(b: B) -> C:
    return C()


def b_to_many(b: B) -> list[C]:
    return [C()]


def keep_b(b: B) -> bool:
    return True


def batch_b(bs: list[B]) -> list[C]:
    return [C() for _ in bs]


class Model(pydantic.BaseModel):
    x: int


# --- stages -----------------------------------------------------------------
s_ab = datapunk.stage(a_to_b)
assert_type(s_ab, datapunk.Stage[A, B])
s_bc = datapunk.stage(b_to_c)
assert_type(s_bc, datapunk.Stage[B, C])
s_xy = datapunk.stage(x_to_y)
assert_type(datapunk.stage(b_to_c_async), datapunk.Stage[B, C])
assert_type(datapunk.stage(kind="filter")(keep_b), datapunk.Stage[B, B])
assert_type(datapunk.stage(kind="flat_map")(b_to_many), datapunk.Stage[B, C])
assert_type(datapunk.stage(kind="batch", size=10)(batch_b), datapunk.Stage[B, C])
assert_type(datapunk.stage(name="double", on_error="skip")(a_to_b), datapunk.Stage[A, B])
assert_type(datapunk.Filter(keep_b), datapunk.Filter[B])
assert_type(datapunk.FlatMap(b_to_many), datapunk.FlatMap[B, C])
assert_type(datapunk.Batch(batch_b, size=8), datapunk.Batch[B, C])

# --- composition: A -> B -> C ------------------------------------------------
assert_type(s_ab | s_bc, datapunk.Pipeline[A, C])
assert_type(datapunk.Pipeline(s_ab, s_bc), datapunk.Pipeline[A, C])
assert_type(datapunk.Pipeline(s_ab, datapunk.Filter(keep_b), s_bc), datapunk.Pipeline[A, C])
assert_type(s_ab | datapunk.Filter(keep_b) | s_bc, datapunk.Pipeline[A, C])
nested = datapunk.Pipeline(datapunk.Pipeline(s_ab, name="inner"), s_bc)
assert_type(nested, datapunk.Pipeline[A, C])


# --- validators ------------------------------------------------------------
def positive(m: Model) -> bool:
    return m.x > 0


v = datapunk.Validate(Model)
assert_type(v, datapunk.Validate[Model])
rule = datapunk.check(positive, "x must be positive")
assert_type(rule, datapunk.Validator[Model, Model])
assert_type(v & rule, datapunk.Validator[Any, Model])
assert_type(datapunk.Validate(list[int]), datapunk.Validate[list[int]])


def model_to_int(m: Model) -> int:
    return m.x


assert_type(v | datapunk.stage(model_to_int), datapunk.Pipeline[Any, int])

# --- running -----------------------------------------------------------------
pipe = s_ab | s_bc
assert_type(pipe.run([A()], []), datapunk.RunReport)
assert_type(pipe.stream([A()]), Iterator[C])
assert_type(pipe(A()), C | None)
assert_type(pipe.apply(A()), list[C])

# --- what must be rejected ----------------------------------------------------


def bad_composition() -> object:
    return s_ab | s_xy  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue, reportUnknownVariableType]


def bad_input() -> object:
    return pipe(X())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def bad_pipeline() -> object:
    return datapunk.Pipeline(s_ab, s_xy)  # type: ignore[misc]  # pyright: ignore[reportArgumentType]
