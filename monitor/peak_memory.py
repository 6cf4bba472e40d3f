"""Peak resident memory (RSS) of this process over a block of code, for the stage tables of
`Engine.process` and `parcel-monitor bench`.

Linux keeps a process's RSS high-water mark (`VmHWM` in `/proc/self/status`) and lets the
process reset it (`5` into `/proc/self/clear_refs`): `peak_rss()` resets it on entry and reads
it on exit, so each block gets its own peak, exactly (no sampling). Blocks nest: a reset inside
a block first folds the mark so far into every open block. Where the mark cannot be reset the
peaks are since the last reset (an upper bound); where there is no `/proc` they are None.
Resetting also resets `getrusage`'s `ru_maxrss`: use the outermost block's peak instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_STATUS: Final = Path("/proc/self/status")
_CLEAR_REFS: Final = Path("/proc/self/clear_refs")
#: High-water marks seen by the open blocks (innermost last), folded in at each reset.
_open: list[list[int]] = []


@dataclass
class Peak:
    """The peak RSS of a block in bytes, set when it ends (None where unknown)."""

    bytes: int | None = None


def current_rss() -> int | None:
    """Resident memory of this process now, in bytes (None without `/proc`)."""
    return _status_kib("VmRSS:")


def _status_kib(field: str) -> int | None:
    try:
        with _STATUS.open() as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset() -> None:
    mark = _status_kib("VmHWM:") or 0
    for frame in _open:
        frame[0] = max(frame[0], mark)
    # Where this is not allowed, later marks include earlier peaks (upper bounds).
    with suppress(OSError):
        _CLEAR_REFS.write_text("5")


@contextmanager
def peak_rss() -> Iterator[Peak]:
    """Measure the peak RSS of the block: `with peak_rss() as peak: ...; peak.bytes`."""
    peak = Peak()
    if _status_kib("VmHWM:") is None:
        yield peak
        return
    _reset()
    frame = [0]
    _open.append(frame)
    try:
        yield peak
    finally:
        _open.pop()  # blocks nest: this one is innermost
        peak.bytes = max(frame[0], _status_kib("VmHWM:") or 0)
