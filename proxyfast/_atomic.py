"""Atomic file writes: a reader sees the old file or the complete new one, never a part.

The new contents go to a temporary file next to the target, named
``.<name>.<host>-<pid>.<random>.tmp``, which is renamed over the target when complete.
The temporary file is removed on any exception, and on SIGTERM or SIGHUP while the
write runs (the signal then takes its default course). A writer killed outright
(SIGKILL, power loss) cannot clean up: the next write of the same target removes the
temporary files of writers of this host that are no longer running.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import signal
import socket
import stat
import threading
from collections.abc import Iterator
from typing import BinaryIO

__all__ = ["atomic_write", "temporary_name_pattern"]

# Which host wrote a temporary file: a process id means something only on its own host
# (a work directory may be on a file system that several hosts share).
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_CLEANUP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))

_pending: set[str] = set()  # temporary files being written now, by any thread
_pending_lock = threading.Lock()
_installed: dict[int, object] = {}  # signal -> the handler it had before ours


def temporary_name_pattern(name: str) -> re.Pattern[str]:
    """Matches the names of the temporary files of a target named ``name``; the groups
    are the writer's host tag and process id."""
    return re.compile(rf"\.{re.escape(name)}\.([0-9a-f]{{8}})-(\d+)\.[0-9a-f]+\.tmp")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Opens a temporary file next to ``path`` for binary writing; on a clean exit it is
    flushed, fsynced and renamed over ``path``; on an exception it is removed and
    ``path`` is left as it was.

    A symbolic link is written through (its target is replaced, the link kept), an
    existing file keeps its permission bits, and a path that names something other than
    a regular file (a directory, a device, a pipe) is refused with ValueError.
    """
    shown = os.fspath(path)
    target = os.path.realpath(shown)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        raise ValueError(f"{shown} is not a regular file ({_kind(mode)}): refusing to replace it")
    directory, name = os.path.split(target)
    _remove_stale_temporaries(directory, name)
    # Same directory, so that os.replace is a rename within one file system. Mode 0o666
    # lets the process umask decide the permissions of a new file, as for any other.
    tmp_path = os.path.join(directory, f".{name}.{_HOST}-{os.getpid()}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:  # name the file the caller asked for, not the temporary one
        raise type(error)(error.errno, error.strerror, shown) from None
    _register(tmp_path)
    try:
        with os.fdopen(fd, "wb") as file:
            if mode is not None:
                os.fchmod(file.fileno(), stat.S_IMODE(mode))
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise
    finally:
        _unregister(tmp_path)
    _fsync_directory(directory)


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _remove_stale_temporaries(directory: str, name: str) -> None:
    """Removes the temporary files of ``name`` left by killed writers of this host."""
    pattern = temporary_name_pattern(name)
    try:
        entries = os.listdir(directory or ".")
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry)
        if match and match.group(1) == _HOST and not _running(int(match.group(2))):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, entry))


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another write of this process, in another thread
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # a process of another user; or a pid no process can have, left alone
    return True


def _register(tmp_path: str) -> None:
    with _pending_lock:
        _pending.add(tmp_path)
        # Handlers can be set only from the main thread, and only where nobody else set one.
        if threading.current_thread() is threading.main_thread():
            for signum in _CLEANUP_SIGNALS:
                if signum not in _installed and signal.getsignal(signum) is signal.SIG_DFL:
                    _installed[signum] = signal.signal(signum, _remove_pending_and_die)


def _unregister(tmp_path: str) -> None:
    with _pending_lock:
        _pending.discard(tmp_path)
        if not _pending and threading.current_thread() is threading.main_thread():
            for signum, previous in list(_installed.items()):
                if signal.getsignal(signum) is _remove_pending_and_die:
                    signal.signal(signum, previous)
                del _installed[signum]


def _remove_pending_and_die(signum, frame) -> None:
    for tmp_path in list(_pending):
        with contextlib.suppress(OSError):
            os.unlink(tmp_path)
    # The default action, as if no handler had been installed: the process ends by the signal.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
