"""Compiled emulator: da4ml's traced logic as integer C++, bit-exact with the interpreter and the Keras model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastml._internal.keras_backend import ensure_backend

ensure_backend()

from fastml.backends.rtl import emulator as compiled_emulator  # noqa: E402
from fastml.errors import ToolError  # noqa: E402
from fastml.verification import bit_exact_mismatches  # noqa: E402


@pytest.fixture(scope="module")
def traced(tiny_rtl_trained):
    """The tiny 16 -> 8 -> 5 MLP of test_rtl, its traced logic, and test events (some beyond the trained range)."""
    from fastml._internal.da4ml import trace_keras

    trained, x = tiny_rtl_trained
    return trained, trace_keras(trained.model), x


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("emu_cache")


@pytest.fixture(scope="module")
def emulator(traced, cache_dir, tmp_path_factory):
    _, comb, _ = traced
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTML_CSIM_CACHE", str(cache_dir))
        return compiled_emulator.build(comb, tmp_path_factory.mktemp("emu"))


@pytest.mark.slow
def test_outputs_equal_interpreter_and_quantized_model(traced, emulator):
    trained, comb, x = traced
    x = x[:2999]  # not a multiple of the block: the last, partial block is exercised
    reference = trained.predict_quantized(x)
    assert np.unique(reference).size > 50, "a near-constant reference would make equality meaningless"
    for threads in (1, 0):
        emulator.n_threads = threads
        out = emulator(x)
        assert out.shape == reference.shape
        assert bit_exact_mismatches(reference, out)[0] == 0
        assert np.array_equal(out, comb.predict(x))
    # wide inputs overflow the input quantisers (wrap-around): still identical to the interpreter
    wide = (np.random.default_rng(3).normal(size=(5000, x.shape[1])) * 8).astype(np.float32)
    assert np.array_equal(emulator(wide), comb.predict(wide.astype(np.float64)))


@pytest.mark.slow
def test_a_perturbed_operation_is_detected(traced, tmp_path, monkeypatch):
    """One constant moved by one LSB in the logic gives mismatches: zero mismatches above means something."""
    trained, comb, x = traced
    monkeypatch.setenv("FASTML_CSIM_CACHE", "off")
    ops = list(comb.ops)
    i = max(j for j, op in enumerate(ops) if op.opcode == 4 and comb.ref_count[j] > 0)  # a bias late in the net
    ops[i] = ops[i]._replace(data=ops[i].data + 1)
    perturbed = compiled_emulator.build(comb._replace(ops=ops), tmp_path)
    mismatches, first = bit_exact_mismatches(trained.predict_quantized(x), perturbed(x))
    assert mismatches > 0 and first is not None


@pytest.mark.slow
def test_cached_library_is_reused(traced, emulator, cache_dir, tmp_path, monkeypatch):
    _, comb, x = traced
    monkeypatch.setenv("FASTML_CSIM_CACHE", str(cache_dir))
    again = compiled_emulator.build(comb, tmp_path)
    assert again.cache_hit and again.key == emulator.key
    assert (cache_dir / f"emu-{emulator.key}" / "emulator.so").is_file()
    assert np.array_equal(again(x[:100]), emulator(x[:100]))


def test_compiler_failure_is_one_line_tool_error(traced, tmp_path, monkeypatch):
    _, comb, _ = traced
    monkeypatch.setenv("FASTML_CSIM_CACHE", "off")
    monkeypatch.setattr(compiled_emulator, "CXX_FLAGS", (*compiled_emulator.CXX_FLAGS, "-fno-such-flag-xyz"))
    with pytest.raises(ToolError) as err:
        compiled_emulator.build(comb, tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "g++ failed" in msg and "compile.log" in msg


def test_unknown_operation_is_refused(traced, tmp_path):
    _, comb, _ = traced
    ops = list(comb.ops)
    i = next(j for j, op in enumerate(ops) if op.opcode == 0 and comb.ref_count[j] > 0)
    ops[i] = ops[i]._replace(opcode=42)
    with pytest.raises(compiled_emulator.UnsupportedLogic, match="opcode 42"):
        compiled_emulator.generate_source(comb._replace(ops=ops))


def _extreme_inputs(comb, n_random: int, seed: int) -> np.ndarray:
    """Events whose features sit at the ends of each input quantiser's range (and one LSB beyond: wrap-around),
    at zero, and in between: the largest intermediate values the logic can produce are reached here."""
    lo = np.array([q.min for q in comb.inp_qint]) * 2.0 ** -np.asarray(comb.inp_shifts, dtype=float)
    hi = np.array([q.max for q in comb.inp_qint]) * 2.0 ** -np.asarray(comb.inp_shifts, dtype=float)
    step = np.array([q.step for q in comb.inp_qint]) * 2.0 ** -np.asarray(comb.inp_shifts, dtype=float)
    rng = np.random.default_rng(seed)
    choices = np.stack([lo, hi, lo - step, hi + step, np.zeros_like(lo)])  # (5, n_in)
    picks = choices[rng.integers(0, len(choices), size=(n_random, len(lo))), np.arange(len(lo))]
    uniform = rng.uniform(lo - step, hi + step, size=(n_random, len(lo)))
    return np.concatenate([choices, picks, uniform]).astype(np.float64)


@pytest.mark.slow
def test_int32_path_equals_int64_path_and_interpreter_at_range_extremes(traced, emulator, tmp_path, monkeypatch):
    """The tiny MLP's results all fit in 31 bits, so it runs on int32 slots; on inputs at the extremes of every
    input's range it equals the int64 path and the interpreter element for element."""
    _, comb, _ = traced
    assert emulator.slot_bits == 32
    monkeypatch.setenv("FASTML_CSIM_CACHE", "off")
    wide = compiled_emulator.build(comb, tmp_path, allow_int32=False)
    assert wide.slot_bits == 64
    x = _extreme_inputs(comb, 3000, seed=5)
    reference = comb.predict(x)
    assert np.unique(reference).size > 50
    for threads in (1, 0):
        emulator.n_threads = wide.n_threads = threads
        assert np.array_equal(emulator(x), reference)
        assert np.array_equal(wide(x), reference)


def test_operations_too_wide_for_int32_are_computed_in_int64(traced, tmp_path, monkeypatch):
    """With the int32 limit lowered, most operations fail the bound check and are computed in int64 on int32
    slots (the mixed path); results still equal the interpreter. Results wider than the slot bound switch
    every slot to int64."""
    _, comb, _ = traced
    monkeypatch.setenv("FASTML_CSIM_CACHE", "off")
    monkeypatch.setattr(compiled_emulator, "I32_MAX", 1 << 10)
    source = compiled_emulator.generate_source(comb)
    narrow = int(source.split(" operations computed in int32")[0].rsplit(" ", 1)[-1])
    live = sum(1 for r in comb.ref_count if r)
    assert "i32 slots" in source and 0 < narrow < live - 16  # some, not all, non-input operations
    mixed = compiled_emulator.build(comb, tmp_path / "mixed")
    x = _extreme_inputs(comb, 2000, seed=6)
    assert mixed.slot_bits == 32 and np.array_equal(mixed(x), comb.predict(x))

    monkeypatch.setattr(compiled_emulator, "I32_RESULT_BOUND", 1 << 2)
    assert "i64 slots, 0 operations computed in int32" in compiled_emulator.generate_source(comb)
