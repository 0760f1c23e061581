"""The report lists every float edge fastml made explicit, with its accuracy cost."""

from __future__ import annotations

import numpy as np
import pytest

from fastml.errors import ConfigError
from fastml.models.float_edges import FixedType, FloatEdge, auto_fixed_type, parse_fixed_type, resolve_precision
from fastml.pipeline import summary_lines
from fastml.report import Report, render_markdown


def test_parse_fixed_type_counts_the_sign_in_the_integer_bits() -> None:
    assert parse_fixed_type("ap_fixed<16,6>", "k") == FixedType(1, 5, 10)
    assert parse_fixed_type("ufixed<8,3>", "k") == FixedType(0, 3, 5)
    assert str(FixedType(1, 5, 10)) == "ap_fixed<16,6>"
    with pytest.raises(ConfigError, match=r"model\.input_precision.*'float'"):
        parse_fixed_type("float", "model.input_precision")


def test_auto_type_holds_the_training_range_in_16_bits() -> None:
    values = np.array([-3.1, 0.2, 7.9])
    t = auto_fixed_type(values)
    assert t.width == 16 and t.k == 1
    lo, hi = t.range
    assert lo <= values.min() and values.max() <= hi and hi < 2 * values.max()  # the smallest range that holds it
    assert auto_fixed_type(np.array([0.1, 0.7])).k == 0  # never negative: no sign bit
    chosen, how = resolve_precision("auto", values, "model.input_precision")
    assert chosen == t and "[-3.1, 7.9]" in how
    assert resolve_precision("ap_fixed<8,4>", values, "model.input_precision")[0] == FixedType(1, 3, 4)


def test_report_lists_float_edges_and_their_cost() -> None:
    report = Report(name="peer", backend="hls4ml")
    report.accuracy.float, report.accuracy.quantized = 0.75, 0.74
    report.model = {"kind": "qkeras", "selection": {"train": "skipped", "float_edges": [
        FloatEdge("fc1", "input", "input quantiser ap_fixed<16,4>").as_dict(),
        FloatEdge("softmax", "output activation", "softmax dropped").as_dict()]}}
    md = render_markdown(report)
    assert "## Float edges made explicit" in md and "+1.00 points" in md
    assert "| fc1 | input | input quantiser ap_fixed<16,4> |" in md
    assert any("float edge [output activation] softmax: softmax dropped" in line for line in summary_lines(report))
    assert "Float edges" not in render_markdown(Report(name="own", backend="rtl"))
