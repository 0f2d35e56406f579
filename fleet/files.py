"""Files that come from users and files written for them, handled so that neither can surprise.

- :func:`read_regular_file` reads an input (a scenario, a weather file) only if it is a
  regular file, and at most a stated number of bytes: a name that points at a FIFO would hang
  the reader, ``/dev/zero`` would fill the memory, and a file of gigabytes is a mistake. The
  file is opened without blocking and checked on the open descriptor (``fstat``), so it cannot
  be swapped between the check and the read.
- :func:`write_new_file` writes an output without ever following a symbolic link: a new file is
  created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``), and replacing one (``overwrite``)
  writes a new file beside it and renames it over the name, which replaces a link itself
  rather than the file it points to.

Errors are :class:`~fleet.errors.ConfigError` (an input) and :class:`~fleet.errors.RunDirError`
(an output), naming the file.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from fleet.errors import ConfigError, RunDirError

_KINDS = {
    stat.S_ISDIR: "a directory",
    stat.S_ISFIFO: "a FIFO (named pipe)",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def read_regular_file(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path`` (symbolic links followed) if it is a regular file of at most
    ``limit`` bytes; otherwise :class:`ConfigError` naming ``what`` (e.g. "weather file") and
    the path, without quoting anything of the file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    _check_regular(fd, path, what)
    try:
        with open(fd, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    if len(data) > limit:
        raise ConfigError(f"{what} {path} is larger than {limit:,} bytes, the most that is read; is it the right file?")
    return data


def _check_regular(fd: int, path: Path, what: str) -> None:
    """Nothing for a regular file; otherwise close ``fd`` and raise ConfigError naming its kind."""
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((name for test, name in _KINDS.items() if test(mode)), "not a regular file")
        raise ConfigError(f"{what} {path} is {kind}, not a regular file")


def write_new_file(path: Path, write: Callable[[BinaryIO], object], overwrite: bool = False) -> Path:
    """Create ``path`` and fill it through ``write(f)``, ``f`` a binary file object; returns ``path``.

    Without ``overwrite`` anything already at ``path`` (a dangling symbolic link included) is
    refused with :class:`RunDirError` and left as it was; with it, the new file replaces the
    name whole once written. If ``write`` fails, the new file is removed.
    """
    target = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp") if overwrite else path
    try:
        fd = os.open(target, _CREATE, 0o644)
    except FileExistsError:
        raise RunDirError(
            f"{path}: already exists; nothing was written over it (pass --overwrite to replace it)"
        ) from None
    except OSError as e:
        raise RunDirError(f"{path}: cannot create it: {e.strerror}") from None
    try:
        with open(fd, "wb") as f:
            write(f)
        if overwrite:
            os.replace(target, path)
    except OSError as e:
        target.unlink(missing_ok=True)
        raise RunDirError(f"{path}: cannot write it: {e.strerror}") from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return path
