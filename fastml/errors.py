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
