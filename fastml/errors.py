"""Errors fastml reports to a user as one line, never as a traceback."""

from __future__ import annotations


class FastmlError(Exception):
    """Base class: the message is a complete, one-line explanation for the user."""


class ConfigError(FastmlError):
    """A build recipe (YAML) is malformed: the message names the file, the key and the expected form."""


class DataError(FastmlError):
    """A data source is missing or unreadable."""


class ToolError(FastmlError):
    """An external tool (compiler, verilator, yosys, Vivado) is missing or failed."""


class VerificationError(FastmlError):
    """Firmware output differs from the quantised model's output."""


class ResourceLimitError(FastmlError):
    """The model is larger than the recipe allows; the message names the limit and how to lift it."""


class BuildLockedError(FastmlError):
    """Another live process is building the same project."""


class UnsupportedLogic(Exception):
    """da4ml logic uses an operation the compiled emulator does not implement: that level is "not run", never a
    guess. Not a ``FastmlError``: the rtl backend turns it into a reason, it never reaches a user as an error."""
