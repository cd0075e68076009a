"""File writes shared by every module that persists something (data cache, run directories, stores).

* :func:`atomic_write_bytes`: readers see the old file or the new one, never a mix; the new file gets
  the permissions a plain ``open(path, "wb")`` would give it (the umask for a new file, the old file's
  mode for a replaced one).
* :func:`json_text` / :func:`parse_json`: strict JSON (RFC 8259) for every JSON file ninr writes. A
  non-finite float (NaN, +-infinity: the loss of a diverged run) is written as ``null``, and a top-level
  object lists where, under :data:`NONFINITE_KEY`, so ninr's own readers get the number back.
* :func:`replace_dir`: swap a finished directory in for an old one in one step (an interruption leaves
  one of the two, whole).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import secrets
import shutil
import signal
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

NONFINITE_KEY = "_nonfinite"
"""The key of a top-level JSON object that lists its non-finite numbers: ``{"/final/test_acc": "NaN"}``, each
written as ``null`` at that JSON Pointer (RFC 6901) and restored by :func:`parse_json`."""

_NONFINITE_NAMES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _open_new(path: Path) -> tuple[int, Path]:
    """A new temporary file beside ``path``, created with mode 0o666 so the kernel applies the umask (and a
    default ACL) exactly as for ``open(path, "wb")``; a file that ``path`` replaces lends it its mode."""
    try:
        mode: int | None = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = None
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        if mode is not None:
            os.chmod(tmp, mode)
        return fd, tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix.

    The bytes go to a temporary file in the same directory (fsynced), which is then renamed into place;
    on any error the temporary file is removed and ``path`` is untouched. The file's mode is what a plain
    ``open(path, "wb")`` gives: ``0o666`` less the umask for a new file, the old file's mode for a replaced one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_new(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _escape(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _strict(value: Any, pointer: str, found: dict[str, str]) -> Any:
    """``value`` with every non-finite float replaced by ``None``, noting each one's pointer in ``found``."""
    if isinstance(value, float) and not math.isfinite(value):
        found[pointer] = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return None
    if isinstance(value, dict):
        return {k: _strict(v, f"{pointer}/{_escape(k)}", found) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v, f"{pointer}/{i}", found) for i, v in enumerate(value)]
    return value


def json_text(data: Any, *, indent: int | None = None) -> str:
    """Strict JSON text of ``data`` (objects it cannot encode as their ``str``).

    A non-finite float becomes ``null``; when ``data`` is a dict, the result also holds
    ``NONFINITE_KEY: {pointer: "NaN" | "Infinity" | "-Infinity"}`` naming each one, which
    :func:`parse_json` reads back. Strict parsers (``jq``, JavaScript's ``JSON.parse``) accept the text.
    """
    found: dict[str, str] = {}
    clean = _strict(data, "", found)
    if found and isinstance(clean, dict):
        clean[NONFINITE_KEY] = found
    return json.dumps(clean, indent=indent, default=str, allow_nan=False)


def _restore(data: Any, marks: Any) -> None:
    if not isinstance(marks, dict):
        raise ValueError(f"`{NONFINITE_KEY}` must be an object of JSON pointers, got {marks!r}")
    for pointer, name in marks.items():
        if name not in _NONFINITE_NAMES or not isinstance(pointer, str) or not pointer.startswith("/"):
            raise ValueError(f"`{NONFINITE_KEY}` must map JSON pointers to NaN or Infinity, got {pointer!r}: {name!r}")
        *parents, last = [_unescape(t) for t in pointer[1:].split("/")]
        node = data
        try:
            for token in parents:
                node = node[int(token)] if isinstance(node, list) else node[token]
            key: Any = int(last) if isinstance(node, list) else last
            if node[key] is not None:
                raise ValueError(f"`{NONFINITE_KEY}` points at {pointer!r}, which is not null")
            node[key] = _NONFINITE_NAMES[name]
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"`{NONFINITE_KEY}` points at {pointer!r}, which is not in the document") from exc


def parse_json(text: str) -> Any:
    """Parse what :func:`json_text` wrote: its non-finite numbers come back as floats.

    Also reads the non-standard ``NaN`` / ``Infinity`` tokens of files written by Python's default encoder.

    Raises:
        ValueError: The text is not JSON, or its :data:`NONFINITE_KEY` list does not fit the document.
    """
    data = json.loads(text)
    if isinstance(data, dict) and NONFINITE_KEY in data:
        _restore(data, data.pop(NONFINITE_KEY))
    return data


# ----------------------------------------------------------------------------- directories

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns:
        Whether it was done; ``False`` where the system or the file system cannot (nothing changed then).

    Raises:
        OSError: The exchange failed for another reason (a missing path, permissions).
    """
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"cannot exchange {a} and {b}: {os.strerror(err)}")


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (delivered on exit) where the platform can."""
    held = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def sibling_dir(path: Path, tag: str) -> Path:
    """A new, empty, hidden directory beside ``path``: ``.NAME.ninr-TAG-XXXXXXXX`` (same file system)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        candidate = path.parent / f".{path.name}.ninr-{tag}-{secrets.token_hex(4)}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate


def replace_dir(new: Path, target: Path) -> None:
    """Put the directory ``new`` at ``target`` and delete the directory that was there.

    Both are on one file system (``new`` made by :func:`sibling_dir`). On Linux the two are exchanged in
    one atomic step, so an interruption at any point leaves ``target`` holding the old directory or the
    new one, whole; the old one is then deleted (a kill during that leaves it under ``new``'s hidden
    name). Elsewhere the old directory is renamed aside and ``new`` renamed in, with SIGINT and SIGTERM
    held back between the two renames.
    """
    new, target = Path(new), Path(target)
    if exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)
        return
    aside = sibling_dir(target, "old")
    aside.rmdir()
    with _signals_deferred():
        os.rename(target, aside)
        try:
            os.rename(new, target)
        except BaseException:
            os.rename(aside, target)
            raise
    shutil.rmtree(aside, ignore_errors=True)
