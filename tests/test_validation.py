"""scratchdet.validation.convert: msgspec's errors as one-line ConfigError(file, key, problem)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import pytest

from scratchdet.errors import ConfigError
from scratchdet.validation import Config, bounds, convert, interval_of


class Inner(Config):
    count: Annotated[int, bounds("[0, inf)")] = 1
    share: Annotated[float, bounds("[0, 1)")] = 0.5
    mode: Literal["x", "y"] = "x"
    priors: Literal["voc", "coco"] | None = None
    free: dict[str, Any] = msgspec.field(default_factory=dict)
    steps: list[int] = msgspec.field(default_factory=list)


class Outer(Config):
    inner: Inner = msgspec.field(default_factory=Inner)


@pytest.mark.parametrize(
    "data, key, problem",
    [
        ({"inner": {"count": -1}}, "inner.count", "must be >= 0, got -1"),
        ({"inner": {"share": 1}}, "inner.share", "must be in [0, 1), got 1"),
        ({"inner": {"share": "x"}}, "inner.share", "expected a number, got 'x'"),
        (
            {"inner": {"shar": 1}},
            "inner.shar",
            "unknown key (did you mean 'share'?); allowed keys here: count, share, mode, priors, "
            "free, "
            "steps",
        ),
        ({"inner": {"mode": "q"}}, "inner.mode", "must be one of x, y, got 'q'"),
        ({"inner": {"priors": "q"}}, "inner.priors", "must be one of null, voc, coco, got 'q'"),
        ({"inner": {"steps": [1, "a"]}}, "inner.steps[1]", "expected an integer, got 'a'"),
        ({"inner": {"count": True}}, "inner.count", "expected an integer, got True"),
        ({"inner": {"share": 10**400}}, "inner.share", "must be a finite number"),
        ({"inner": {"free": {"a": [0.1, float("inf")]}}}, "inner.free.a[1]", "finite"),
        ({"inner": []}, "inner", "expected a mapping, got []"),
        ([], "<top>", "expected a mapping, got []"),
    ],
)
def test_the_first_problem_names_file_and_dotted_key(data, key, problem):
    with pytest.raises(ConfigError) as err:
        convert(data, Outer, path="f.yaml")
    assert err.value.key == key and problem in err.value.problem, str(err.value)
    assert str(err.value).startswith("f.yaml: ") and "\n" not in str(err.value)


def test_a_key_prefix_and_numbers_as_yaml_1_1_reads_them():
    with pytest.raises(ConfigError) as err:
        convert({"count": -2}, Inner, path=None, key="model")
    assert str(err.value) == "model.count: must be >= 0, got -2"
    data = {"inner": {"share": "1e-3"}}
    out = convert(data, Outer, path=None)
    assert out.inner.share == 0.001 and data["inner"]["share"] == "1e-3"  # input left alone
    assert convert({"inner": {"share": 0}}, Outer, path=None).inner.share.__class__ is float


def test_bounds_keeps_its_spec_and_refuses_a_malformed_one():
    assert interval_of(Annotated[float, bounds("(0, 1]")]) == "(0, 1]"
    with pytest.raises(ValueError, match="malformed range"):
        bounds("0..1")
