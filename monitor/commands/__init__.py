"""Subcommands of `parcel-monitor`, one module each.

A module defines `register(subparsers)`, adds its parser and sets `func` to a callable taking
the parsed arguments and returning the exit code. Heavy imports happen inside `func`, so
`parcel-monitor --help` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeAlias

from monitor.commands import (
    bench,
    broker,
    demo,
    detect,
    models,
    publish,
    replay,
    report,
    run,
    simulate,
    zonal,
)

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

COMMANDS: list[Callable[[Subparsers], None]] = [
    bench.register,
    broker.register,
    demo.register,
    detect.register,
    models.register,
    publish.register,
    replay.register,
    report.register,
    run.register,
    simulate.register,
    zonal.register,
]
