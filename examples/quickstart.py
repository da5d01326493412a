"""
Quickstart: validate, transform and filter records, with every record accounted for.

Run it with ``python examples/quickstart.py``. It validates raw dicts against
``InputData``, keeps the valid ones, computes ``OutputData``, and prints the run
report and the rejected records with their positions and reasons.
"""

from __future__ import annotations

import pydantic

import datapunk


class InputData(pydantic.BaseModel):
    """A raw record as it arrives."""

    record_id: str
    value: float
    is_valid: bool


class OutputData(pydantic.BaseModel):
    """A processed record."""

    record_id: str
    processed_value: float


@datapunk.stage
def process(record: InputData) -> OutputData:
    """Double the value."""
    return OutputData(record_id=record.record_id, processed_value=record.value * 2)


keep_valid = datapunk.Filter(lambda record: record.is_valid, name="keep_valid")
non_negative = datapunk.check(lambda r: r.value >= 0, "value must be >= 0", field="value")

pipeline = datapunk.Pipeline(
    datapunk.Validate(InputData) & non_negative,
    keep_valid,
    process,
    name="quickstart",
)

RAW = [
    {"record_id": "r1", "value": 1.5, "is_valid": True},
    {"record_id": "r2", "value": "2.5", "is_valid": "yes"},  # coerced by pydantic
    {"record_id": "r3", "value": 9.0, "is_valid": False},  # filtered out
    {"record_id": "r4", "value": "n/a", "is_valid": True},  # invalid value
    {"record_id": "r5", "value": -1.0, "is_valid": True},  # fails the rule
    {"value": 3.0},  # two fields missing
]


def main() -> datapunk.RunReport:
    """Run the pipeline over RAW and print what happened."""
    outputs: list[OutputData] = []
    rejects: list[datapunk.DeadLetter] = []
    report = pipeline.run(RAW, outputs, dead_letter=rejects)
    print(report)
    print("\noutputs:")
    for out in outputs:
        print(" ", out.model_dump())
    print("\nrejected:")
    for dl in rejects:
        for reason in dl.reasons:
            print(f"  record {dl.position}: {reason}")
    return report


if __name__ == "__main__":
    main()
