"""The checking copy of hls4ml's <project>_test.cpp (fastml.backends.hls4ml.testbench): where the comparison goes,
how outputs are offset into the expected line, and a one-line error for a file not laid out as hls4ml's template.
Compiled and run with g++ in tests/integration/test_build.py."""

from __future__ import annotations

import pytest

from fastml.backends.hls4ml.testbench import checking_copy
from fastml.errors import FastmlError

#: hls4ml 1.x's template, filled in as for a model with two outputs (the parts the checking copy touches)
TEST_CPP = """#include "firmware/two.h"
#define CHECKPOINT 5000
int main(int argc, char **argv) {
    int e = 0;
    if (fin.is_open() && fpr.is_open()) {
        while (std::getline(fin, iline) && std::getline(fpr, pline)) {
            std::vector<float> pr;
            two(input_1, layer4_out, layer5_out);
            e++;

            // hls-fpga-machine-learning insert tb-output
            nnet::print_result<result_t, 5>(layer4_out, fout);
            nnet::print_result<result2_t, 3>(layer5_out, fout);
        }
    } else {
        for (unsigned i = 0; i < NUM_TEST_SAMPLES; i++) {
            nnet::print_result<result_t, 5>(layer4_out, fout);
        }
    }
    fout.close();
    return 0;
}
"""


def test_every_output_is_compared_before_it_is_printed_at_its_offset() -> None:
    out = checking_copy(TEST_CPP, "two", 123)
    body = out[out.index("if (fin.is_open()"):out.index("} else {", out.index("if (fin.is_open()"))]
    assert body.index("fastml_check<result_t, 5>(layer4_out, pr, 0, e - 1);") < body.index(
        "nnet::print_result<result_t, 5>(layer4_out, fout);")
    assert "fastml_check<result2_t, 3>(layer5_out, pr, 5, e - 1);" in body  # after the first output's 5 values
    assert "std::vector<double> pr;" in body and "std::vector<float> pr;" not in out
    # the default-input branch (no tb_data) is left alone, and then counts as FAIL: 0 events read
    assert out.count("fastml_check<") == 2  # the two calls in the file-reading branch, none in the other
    assert "return 0;" in out and "return 1;" in out and "e == 123" in out
    assert 'std::cout << "PASS: two: " << e << " events, 0 mismatches (C simulation)"' in out


def test_a_file_not_laid_out_as_hls4mls_template_is_one_line() -> None:
    with pytest.raises(FastmlError, match=r"^two_test\.cpp is not laid out as hls4ml's template") as err:
        checking_copy("int main() { return 0; }\n", "two", 1)
    assert "\n" not in str(err.value)
    no_output = TEST_CPP.replace("fout);", "std::cout);")
    with pytest.raises(FastmlError, match="prints no output"):
        checking_copy(no_output, "two", 1)
