"""hls4ml's own C testbench, fed the events fastml verified on, and a checking copy of it that says PASS or FAIL.

``write_testbench(firmware_dir, x, reference)`` (``firmware_dir``: hls4ml's output folder, the project's
``firmware/``) writes

==================================  ==================================================================
``tb_data/tb_input_features.dat``   the verification events, one a line, as hls4ml's ``<project>_test.cpp`` reads
                                    them (the float32 values fastml's C simulation was given)
``tb_data/tb_output_predictions.dat``  the build's reference outputs for them, one event a line
``tb/<project>_check.cpp``          ``<project>_test.cpp`` with a comparison added (below)
``tb/interface.json``               project, events, the g++ command
==================================  ==================================================================

hls4ml's ``<project>_test.cpp`` (Vitis HLS ``csim_design`` / ``cosim_design`` run it) reads both files, runs
the top function on each event and writes the outputs to ``tb_data/csim_results.log``, but compares nothing.
The checking copy keeps every line of it and adds, before each ``print_result`` of the outputs, a comparison
of each output with the expected value (as float32: what the build's bit-exact C-simulation check compared;
``hls::stream`` outputs are read and written back), and ends with one ``PASS``/``FAIL`` line (exit status 1 on
FAIL, also when fewer events than expected were read). Numbers are written as the shortest decimal of their
double, so ``atof`` reads back exactly the same value.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import FastmlError
from .._testbench import INTERFACE_FILE, SHOWN_MISMATCHES, TB_DIR

TB_DATA = "tb_data"
INPUT_DAT = "tb_input_features.dat"
OUTPUT_DAT = "tb_output_predictions.dat"

_CHECKER = """
// fastml: each output compared with tb_data/tb_output_predictions.dat (as float32, as fastml's build compared the
// C simulation with its reference); a mismatching event is counted once.
static long fastml_errors = 0;
static int fastml_last_bad = -1;

static void fastml_compare(float got, const std::vector<double> &pr, size_t index, int event) {
    bool missing = index >= pr.size();
    if (!missing && got == static_cast<float>(pr[index]))
        return;
    if (event != fastml_last_bad) {
        if (fastml_errors < SHOWN_MISMATCHES) {
            std::cout << "mismatch: event " << event << ": output " << index << " " << got << ", expected ";
            if (missing)
                std::cout << "(none: the line is short)";
            else
                std::cout << static_cast<float>(pr[index]);
            std::cout << std::endl;
        }
        fastml_errors++;
        fastml_last_bad = event;
    }
}

template <class res_T, size_t SIZE>
void fastml_check(res_T result[SIZE], const std::vector<double> &pr, size_t offset, int event) {
    for (size_t i = 0; i < SIZE; i++)
        fastml_compare(static_cast<float>(result[i]), pr, offset + i, event);
}

template <class res_T, size_t SIZE>
void fastml_check(hls::stream<res_T> &result, const std::vector<double> &pr, size_t offset, int event) {
    for (size_t i = 0; i < SIZE / res_T::size; i++) {
        res_T pack = result.read();
        for (size_t j = 0; j < res_T::size; j++)
            fastml_compare(static_cast<float>(pack[j]), pr, offset + i * res_T::size + j, event);
        result.write(pack);  // print_result below reads it again
    }
}
"""

_PRINT_RESULT = re.compile(r"^(\s*)nnet::print_result<\s*([\w:]+)\s*,\s*(\d+)\s*>\(\s*(\w+)\s*,\s*fout\s*\);", re.M)


def checking_copy(test_cpp: str, project: str, n_events: int) -> str:
    """``<project>_test.cpp`` with the comparison against the expected outputs and a PASS/FAIL verdict."""
    branch = test_cpp.find("if (fin.is_open() && fpr.is_open())")
    other = test_cpp.find("} else {", branch)
    marker = "#define CHECKPOINT"
    if branch < 0 or other < 0 or marker not in test_cpp or test_cpp.count("return 0;") != 1:
        raise FastmlError(f"{project}_test.cpp is not laid out as hls4ml's template (the file-reading branch, "
                          "CHECKPOINT, one return); no checking copy written")
    head, body, tail = test_cpp[:branch], test_cpp[branch:other], test_cpp[other:]
    if "std::vector<float> pr;" not in body:
        raise FastmlError(f"{project}_test.cpp reads no 'std::vector<float> pr'; no checking copy written")
    body = body.replace("std::vector<float> pr;", "std::vector<double> pr;  // fastml: exact expected values")
    offset = 0
    pieces, last = [], 0
    for m in _PRINT_RESULT.finditer(body):
        indent, rtype, size, var = m[1], m[2], int(m[3]), m[4]
        pieces += [body[last:m.start()],
                   f"{indent}fastml_check<{rtype}, {size}>({var}, pr, {offset}, e - 1);  // fastml\n"]
        offset += size
        last = m.start()
    if not pieces:
        raise FastmlError(f"{project}_test.cpp prints no output with nnet::print_result(..., fout); "
                          "no checking copy written")
    body = "".join(pieces) + body[last:]
    line_end = head.index("\n", head.index(marker)) + 1
    head = (head[:line_end] + f"#define SHOWN_MISMATCHES {SHOWN_MISMATCHES}\n" + _CHECKER + head[line_end:])
    verdict = f"""// fastml: one PASS/FAIL line; FAIL (exit status 1) also when fewer events than expected were read
    if (fastml_errors == 0 && e == {n_events}) {{
        std::cout << "PASS: {project}: " << e << " events, 0 mismatches (C simulation)" << std::endl;
        return 0;
    }}
    std::cout << "FAIL: {project}: " << fastml_errors << " of {n_events} events mismatch, " << e
              << " events read (C simulation)" << std::endl;
    return 1;"""
    tail = tail.replace("return 0;", verdict)
    return ("// fastml: hls4ml's " + f"{project}_test.cpp with a comparison of every output (tb/{project}_check.cpp)\n"
            + head + body + tail)


def _number(v: float) -> str:
    """The shortest decimal that reads back (``atof``) as exactly this double."""
    return repr(float(v))


def gxx_command(project: str, binary: str = "/tmp/check") -> str:
    """The command, run from hls4ml's output folder, that compiles and runs the checking copy."""
    return (f"g++ -std=c++17 -O1 -Ifirmware/ap_types -I. -DWEIGHTS_DIR='\"firmware/weights\"' "
            f"{TB_DIR}/{project}_check.cpp firmware/{project}.cpp -o {binary} && {binary}")


def write_testbench(firmware_dir: Path, project: str, x: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Write hls4ml's ``tb_data`` for the events ``x`` and the reference outputs, and the checking copy."""
    test_cpp = firmware_dir / f"{project}_test.cpp"
    try:
        source = test_cpp.read_text()
    except OSError as err:
        raise FastmlError(f"{test_cpp}: cannot read hls4ml's testbench ({err}); expected the file hls4ml writes") \
            from None
    # the values the build's C simulation ran on (float32), as doubles: exact in the .dat files
    xs = np.asarray(x, dtype=np.float32).reshape(len(x), -1).astype(np.float64)
    ys = np.asarray(reference, dtype=np.float64).reshape(len(x), -1)
    check = checking_copy(source, project, len(xs))
    data = firmware_dir / TB_DATA
    data.mkdir(parents=True, exist_ok=True)
    (data / INPUT_DAT).write_text("".join(" ".join(map(_number, row)) + "\n" for row in xs))
    (data / OUTPUT_DAT).write_text("".join(" ".join(map(_number, row)) + "\n" for row in ys))
    tb = firmware_dir / TB_DIR
    tb.mkdir(parents=True, exist_ok=True)
    (tb / f"{project}_check.cpp").write_text(check)
    interface = {"project": project, "events": len(xs), "inputs": int(xs.shape[1]), "outputs": int(ys.shape[1]),
                 "inputs_file": f"{TB_DATA}/{INPUT_DAT}", "expected_file": f"{TB_DATA}/{OUTPUT_DAT}",
                 "testbench": f"{project}_test.cpp", "checking_copy": f"{TB_DIR}/{project}_check.cpp",
                 "run_from": "firmware/ (hls4ml's output folder)", "command": gxx_command(project),
                 "expected_from": "the build's reference (the quantised model), compared bit for bit with this C "
                                  "simulation in the build's csim level"}
    (tb / INTERFACE_FILE).write_text(json.dumps(interface, indent=1) + "\n")
    return interface


__all__ = ["INPUT_DAT", "OUTPUT_DAT", "TB_DATA", "checking_copy", "gxx_command", "write_testbench"]
