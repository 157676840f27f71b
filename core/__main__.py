"""``python -m core COMMAND ...``: only dispatches; the commands, their flags and examples are
in :mod:`core.cli` (one module per command group). Importing this module runs nothing."""

from __future__ import annotations

from .cli import build_parser, main
from .cli.common import _knobs  # re-exported: tests build knobs from parsed flags through here

__all__ = ["_knobs", "build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
