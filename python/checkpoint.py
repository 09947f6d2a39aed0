"""Atomic writes (temp file or folder + rename; a file gets the permissions of a normal file) and checkpoints loaded
with ``weights_only=True``. The one home of atomic writes: the run folder, the benchmark results and the simulated
mPower cohort are written through it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temp file beside ``path``, then rename it to ``path``: a reader sees either the old file
    or the complete new one. The file gets the mode a plain ``open(path, "w")`` gives (0666 minus the umask), not
    mkstemp's 0600. OSError naming ``path`` when it cannot be written (read-only folder, full disk)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) or (isinstance(exc, RuntimeError) and "write" in str(exc)):
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
            raise OSError(getattr(exc, "errno", None), f"cannot write {path}: {reason}") from exc
        raise


def write_dir_atomic(target: Path, fill: Callable[[Path], None]) -> None:
    """Call ``fill(folder)`` on a new temp folder beside ``target``, then rename it to ``target`` (an existing
    ``target`` is first moved aside and deleted): a reader never sees a half-filled ``target``."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        fill(tmp)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """Write the checkpoint ``state`` to ``path`` atomically (:func:`write_atomic`)."""
    write_atomic(path, lambda f: torch.save(state, f))


def load(path: Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU; only tensors and plain containers are accepted (``weights_only=True``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc
