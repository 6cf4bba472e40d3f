"""Durable file replacement, shared by everything the engine writes beside its store.

A reader (another worker on a shared filesystem, a later replay) must see either the old file
or the new one, never half of one, and a rename must survive a power cut once it returned.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from monitor.errors import StoreError


def fsync_dir(directory: Path) -> None:
    """Make a rename durable: POSIX only persists it once the directory itself is synced."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some network and FUSE filesystems cannot sync a directory; the rename stays atomic.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through `write(file)` to a unique tmp file beside `path`, fsync, then rename.

    Tmp names are unique (concurrent writers never clash) and hidden (`.NAME.HEX.tmp`), so
    scans for the final names skip a writer killed mid-write; `StoreError` names the path.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:  # also on Ctrl-C: never leave a tmp file behind on purpose
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
