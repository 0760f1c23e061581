"""Resource limits of a build: a model too large to convert, and external tools that hang.

``check_model_size`` stops a build before the multi-minute conversion when the trained model has more
weights than ``firmware.max_weights`` (``--force`` overrides). ``tool_watchdog`` kills every process the
build started (g++, verilator, yosys, Vivado, whatever a library launches) once ``firmware.tool_timeout_s``
has passed, and turns whatever the library then raises into one ``ToolError``; since this happens inside
the staging folder, the previous project is left as it was.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import ResourceLimitError, ToolError


def count_weights(model: Any) -> int | None:
    """Number of weights of a Keras model (any architecture), or ``None`` for models that are not Keras."""
    count = getattr(model, "count_params", None)
    return int(count()) if callable(count) else None


def check_model_size(model: Any, max_weights: int, force: bool = False) -> int | None:
    """Raise ``ResourceLimitError`` if ``model`` has more than ``max_weights`` weights (unless ``force``).

    Returns the count (``None`` when the model is not a Keras model, e.g. a BDT).
    """
    n = count_weights(model)
    if n is not None and n > max_weights and not force:
        raise ResourceLimitError(
            f"the model has {n:,} weights, more than firmware.max_weights = {max_weights:,}: firmware this large "
            "takes very long to compile and will not fit a trigger FPGA; shrink the model, raise "
            "firmware.max_weights, or pass --force to build it anyway")
    return n


def _descendants() -> list[Any]:
    import psutil

    try:
        return psutil.Process(os.getpid()).children(recursive=True)
    except psutil.Error:
        return []


@contextmanager
def tool_watchdog(timeout_s: float, what: str = "conversion") -> Iterator[None]:
    """Kill this process's child processes if the block runs longer than ``timeout_s``.

    After the deadline every child (and grandchild) is killed, again each second until the block ends, so
    a script that starts its next compiler is stopped too. Whatever the block then raises, or if it
    returns, ``ToolError`` (one line, naming the killed programs and the recipe key) is raised.
    """
    import psutil

    killed: list[str] = []
    expired = threading.Event()
    done = threading.Event()

    def watch() -> None:
        if done.wait(timeout_s):
            return
        expired.set()
        while not done.is_set():
            for proc in _descendants():
                try:
                    name = " ".join(proc.cmdline()[:2]) or proc.name()
                    proc.kill()
                    killed.append(name)
                except psutil.Error:
                    continue
            done.wait(1.0)

    thread = threading.Thread(target=watch, name="fastml-tool-watchdog", daemon=True)
    start = time.monotonic()
    thread.start()
    try:
        yield
    except BaseException:
        if expired.is_set():
            raise _timeout_error(what, timeout_s, killed) from None
        raise
    finally:
        done.set()
        thread.join()
    if expired.is_set() and time.monotonic() - start >= timeout_s:
        raise _timeout_error(what, timeout_s, killed)


def _timeout_error(what: str, timeout_s: float, killed: list[str]) -> ToolError:
    names = ", ".join(dict.fromkeys(killed)) or "no child process (the hang was inside Python)"
    return ToolError(f"{what} ran longer than firmware.tool_timeout_s = {timeout_s:g} s; killed: {names}; "
                     "the previous project is untouched (raise firmware.tool_timeout_s if the tools are just slow)")


__all__ = ["ResourceLimitError", "check_model_size", "count_weights", "tool_watchdog"]
