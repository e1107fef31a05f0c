"""The OTLP exporter's durable spool: undelivered requests as files in a directory,
so that they survive a restart or a power loss and are sent, oldest first, later.

Each file is one request exactly as it goes on the wire (encoded, and compressed when
gzip is on) behind a 16-byte header: magic, format version, flags (gzip, JSON), body
length and CRC-32. A file is written to a temporary name, fsynced, renamed, and the
directory fsynced, so a file with a final name is complete. Names carry a sequence
number (``%012d.otlp``, wider past 10**12) that continues from the highest one found
and is sorted as a number, so the order survives a reboot of a device whose clock
restarts in the past.

The directory is a trust boundary. Invariants:

- It is refused at construction (``SpoolRefused``, an OSError) when it is a symbolic
  link, is not owned by the process's effective user, is writable by group or others
  without the sticky bit, or is locked by another spool. Directories created for it
  are 0700 and files 0600, whatever the umask.
- It is opened once; every later open, rename and delete is relative to that
  descriptor and never follows a link (``O_NOFOLLOW``); temporary files are created
  with ``O_EXCL`` and never reuse a name that exists.
- Only regular files owned by the process's user, with one link and a valid header
  whose length fits ``max_bytes``, are counted, replayed or evicted; anything else is
  left alone (or renamed ``*.corrupt``) and counted in ``skipped``. A file is never
  loaded before its header is checked, and one over 1 MiB is neither counted nor
  loaded before its CRC is (read a chunk at a time).
- A file that cannot be read for a while (out of descriptors or memory: ``TRANSIENT``
  errors) stays where it is and is read again later; only one that is not a valid
  request, or cannot be read for another reason, is renamed aside.
- A directory removed while the spool runs (a cleaner, an operator) is made again, with
  the same checks, at the next write: what is kept afterwards still reaches the disk
  (what was in it is gone, counted in ``dropped``).
- One spool per directory: an exclusive ``flock`` on ``.lock``, held until ``close()``.
  A forked child drops the spool it inherited (its requests stay in its memory): its
  owner, the exporter's ``RequestStore``, calls ``leave_to_parent`` from its fork hook.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import stat
import struct
import weakref
import zlib
from collections import deque
from typing import BinaryIO, Deque, Optional, Tuple

from otelmetrics.export.otlp_queue import GZIP, JSON, QueuedRequest

_logger = logging.getLogger("otelmetrics.export.otlp")

_HEADER = struct.Struct("<4sBBHII")   # magic, version, flags, reserved, body length, CRC-32 of the body
_MAGIC = b"OTMS"
_VERSION = 1
_NAME = re.compile(r"\A(\d{12,20})\.otlp\Z")
_TEMP_PREFIX = ".tmp-"
_TEMP_TRIES = 8
_CORRUPT_SUFFIX = ".corrupt"
_LOCK_NAME = ".lock"
_CHUNK = 1 << 20   # a body larger than this has its CRC checked in chunks before it is loaded

# Read errors that say nothing about the file: it is read again later, never set aside.
TRANSIENT = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.EINTR, errno.ENOBUFS))

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in under a checked name does not hang the open.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class SpoolRefused(OSError):
    """The directory is not safe or not free to spool into; the message says why."""


def file_name(sequence: int) -> str:
    return "%012d.otlp" % sequence


def _sequence(name: str) -> Optional[int]:
    """The sequence number of a spool file name, or None (only the canonical spelling)."""
    match = _NAME.match(name)
    if match is None:
        return None
    number = int(match.group(1))
    return number if file_name(number) == name else None


def _make_directories(path: str) -> None:
    """Create the missing directories of ``path``, each 0700 whatever the umask."""
    missing = []
    p = path
    while p and not os.path.lexists(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            continue   # made meanwhile by someone else: checked below like any existing one
        fd = os.open(p, _DIR_FLAGS)
        try:
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)


def _open_directory(directory: str) -> int:
    """A descriptor of ``directory``, created if missing, after the safety checks."""
    path = directory.rstrip("/") or "/"   # a trailing slash would make the open follow a final link
    _make_directories(path)
    if os.path.islink(path):
        raise SpoolRefused("%s is a symbolic link; give the directory it points to, if you trust it" % path)
    fd = os.open(path, _DIR_FLAGS)   # O_NOFOLLOW: a link swapped in since the check fails here
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise SpoolRefused("%s is owned by uid %d, not by this process's user (uid %d); "
                               "use a directory of your own" % (path, st.st_uid, os.geteuid()))
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            raise SpoolRefused("%s is writable by group or others (mode %04o); chmod go-w it or use "
                               "a private directory" % (path, stat.S_IMODE(st.st_mode)))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lock(dir_fd: int, directory: str) -> int:
    """An exclusive flock on the directory's lock file, or SpoolRefused."""
    fd = os.open(_LOCK_NAME, _LOCK_FLAGS, 0o600, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise SpoolRefused("%s/%s is not a regular file of this process's user" % (directory, _LOCK_NAME))
        if stat.S_IMODE(st.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SpoolRefused("%s is in use by another exporter (in this process or another); "
                               "give each exporter its own spool directory" % directory) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _close_all(fds: list) -> None:
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass


def _crc_matches(f: BinaryIO, length: int, crc: int) -> bool:
    """Whether the body after the header has ``crc``, read a chunk at a time; the file is
    left positioned after the header again."""
    check, left = 0, length
    while left:
        chunk = f.read(min(_CHUNK, left))
        if not chunk:
            break
        check = zlib.crc32(chunk, check)
        left -= len(chunk)
    f.seek(_HEADER.size)
    return not left and check == crc


def _read_body(f: BinaryIO, length: int, crc: int) -> Optional[bytes]:
    """The body after the header, or None if it is short or its CRC is wrong."""
    if length > _CHUNK and not _crc_matches(f, length, crc):
        return None   # checked before holding it all: a large file not ours costs no memory
    body = f.read(length)
    if len(body) != length or zlib.crc32(body) != crc:
        return None
    return body


class Spool:
    """Bounded in bytes and files; when full, the oldest files are deleted and counted.
    Not thread-safe: the exporter calls it with its export lock held."""

    def __init__(self, directory: str, max_bytes: int, max_files: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.bytes = 0
        self.dropped = 0         # files deleted undelivered because the spool was full
        self.skipped = 0         # corrupt or foreign files left alone (or renamed aside)
        self.write_errors = 0
        self._writes_failing = False
        self.forked = False      # set in a forked child, which must leave the directory alone
        self._files: Deque[Tuple[str, int]] = deque()   # (name, size), oldest first
        self._next = 0
        self._uid = os.geteuid()
        self.unreadable = False  # the oldest file could not be read just now (a TRANSIENT error)
        self._fds: list = []     # the directory's descriptor and its lock's
        self._closer = weakref.finalize(self, _close_all, self._fds)   # an exporter dropped unclosed unlocks too
        try:
            self._dir_fd: Optional[int] = None
            self._take_directory()
            self._scan()
            self._make_room(0, 0)    # the bounds may be smaller than when the files were written
        except BaseException:
            self._closer()
            raise

    def _take_directory(self) -> None:
        """Open (creating it if missing) and lock the directory."""
        fd = _open_directory(self.directory)
        try:
            lock = _lock(fd, self.directory)
        except BaseException:
            os.close(fd)
            raise
        _close_all(self._fds)      # a removed directory's, when it is taken again
        self._fds += [fd, lock]
        self._dir_fd = fd

    def _retake_removed_directory(self) -> None:
        """When the directory was removed behind our back, make it again and take it;
        its files went with it (counted as dropped). One fstat per write, and writes
        happen only while the collector is unreachable. When it cannot be made again,
        the writes fail (and count) as before."""
        try:
            if os.fstat(self._dir_fd).st_nlink > 0:
                return
            self._take_directory()
        except OSError as e:
            if not self._writes_failing:
                _logger.error("OTLP spool: %s was removed and cannot be made again (%s)", self.directory, e)
            return
        if self._files:
            self.dropped += len(self._files)
            _logger.error("OTLP spool: %s was removed with %d undelivered request(s) in it; made it again",
                          self.directory, len(self._files))
        else:
            _logger.warning("OTLP spool: %s was removed; made it again", self.directory)
        self._files.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._files)

    @property
    def max_body(self) -> int:
        """The largest request one file can hold within ``max_bytes`` (its header aside)."""
        return self.max_bytes - _HEADER.size

    @property
    def closed(self) -> bool:
        return self._dir_fd is None

    def close(self) -> None:
        """Release the directory and its lock; the files stay for the next run."""
        self._dir_fd = None
        self._closer()

    def leave_to_parent(self) -> None:
        """In a forked child: the parent still spools into the directory, and the child
        must not (its copy of the lock is the parent's), so its undelivered requests stay
        in its memory."""
        self.forked = True
        self.close()
        self._files.clear()
        self.bytes = 0

    # ------------------------------------------------------------ reading files

    def _ours(self, st: os.stat_result) -> bool:
        return stat.S_ISREG(st.st_mode) and st.st_uid == self._uid and st.st_nlink == 1

    def _open(self, name: str) -> Tuple[Optional[BinaryIO], int, int, int]:
        """(file positioned after the header, flags, body length, CRC) of a spool file
        of ours with a valid header; (None, ...) if it is not one."""
        fd = os.open(name, _READ_FLAGS, dir_fd=self._dir_fd)
        try:
            st = os.fstat(fd)
            # The size first: a file longer than the whole spool's bound is never read.
            ok = self._ours(st) and _HEADER.size <= st.st_size <= self.max_bytes
            header = os.read(fd, _HEADER.size) if ok else b""
        except BaseException:
            os.close(fd)
            raise
        if len(header) == _HEADER.size:
            magic, version, flags, _, length, crc = _HEADER.unpack(header)
            if (magic == _MAGIC and version == _VERSION and not flags & ~(GZIP | JSON)
                    and length == st.st_size - _HEADER.size):
                return os.fdopen(fd, "rb"), flags, length, crc
        os.close(fd)
        return None, 0, 0, 0

    def _scan(self) -> None:
        found = []
        foreign = []
        with os.scandir(self._dir_fd) as entries:
            names = [entry.name for entry in entries]
        for name in names:
            if name == _LOCK_NAME:
                continue
            try:
                st = os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False)
                if name.startswith(_TEMP_PREFIX) and self._ours(st):
                    # A write cut short before its rename: incomplete by construction.
                    os.unlink(name, dir_fd=self._dir_fd)
                    continue
                sequence = _sequence(name)
                if sequence is None or not self._ours(st):
                    foreign.append(name)
                    continue
                f, _, length, crc = self._open(name)
                if f is not None:
                    with f:
                        # A large file is counted only once its CRC is right: one that only
                        # looks like ours must not push valid requests out of the spool.
                        valid = length <= _CHUNK or _crc_matches(f, length, crc)
            except FileNotFoundError:
                continue
            except OSError as e:
                _logger.warning("OTLP spool: cannot read %s (%s); skipping it", self._path(name), e)
                foreign.append(name)
                continue
            if f is None or not valid:
                self._set_aside(name)
                continue
            found.append((sequence, name, st.st_size))
        if foreign:
            self.skipped += len(foreign)
            _logger.warning("OTLP spool %s: skipping %d file(s) that are not spooled requests (%s)",
                            self.directory, len(foreign), ", ".join(sorted(foreign)[:5]))
        found.sort()   # by sequence number, not by name: 10**12 sorts after 999999999999
        self._files.extend((name, size) for _, name, size in found)
        self.bytes = sum(size for _, _, size in found)
        self._next = found[-1][0] + 1 if found else 0

    def _set_aside(self, name: str) -> None:
        self.skipped += 1
        try:
            os.replace(name, name + _CORRUPT_SUFFIX, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
        except OSError:
            pass
        _logger.warning("OTLP spool: %s is not a valid spooled request within max_spool_bytes; "
                        "renamed to %s and skipped",
                        self._path(name), name + _CORRUPT_SUFFIX)

    def _path(self, name: str) -> str:
        """For messages only: files are reached through the directory descriptor."""
        return os.path.join(self.directory, name)

    # ------------------------------------------------------------ writing and deleting

    def _make_room(self, files: int, size: int) -> None:
        while self._files and (len(self._files) + files > self.max_files or self.bytes + size > self.max_bytes):
            name, old = self._files.popleft()
            self.bytes -= old
            self.dropped += 1
            self._unlink(name)
            _logger.warning("OTLP spool %s is full; dropped the oldest request, %s", self.directory, name)

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self._dir_fd)   # removes a link itself, never what it points to
        except FileNotFoundError:
            pass
        except OSError as e:
            _logger.warning("OTLP spool: cannot delete %s: %s", self._path(name), e)

    def _create_temp(self, name: str) -> Tuple[str, int]:
        """A new temporary file for ``name``: (its name, a descriptor open for writing)."""
        for attempt in range(_TEMP_TRIES):
            temp = _TEMP_PREFIX + name + (".%d" % attempt if attempt else "")
            try:
                return temp, os.open(temp, _CREATE_FLAGS, 0o600, dir_fd=self._dir_fd)
            except FileExistsError:
                # Not left by us (the scan removes ours): never opened, never reused.
                _logger.warning("OTLP spool: %s exists and is not ours; leaving it alone", self._path(temp))
        raise FileExistsError("no free temporary name for %s" % name)

    def put(self, body: bytes, flags: int) -> bool:
        """Write one request; False if it is not on disk (the caller keeps it in memory)."""
        if len(body) > self.max_body or self._dir_fd is None:
            return False
        self._retake_removed_directory()
        return self._write(body, flags)

    def _write(self, body: bytes, flags: int) -> bool:
        size = _HEADER.size + len(body)
        self._make_room(1, size)
        name = file_name(self._next)
        temp = None
        try:
            temp, fd = self._create_temp(name)
            with os.fdopen(fd, "wb") as f:
                os.fchmod(fd, 0o600)   # the umask may have taken bits from the owner
                f.write(_HEADER.pack(_MAGIC, _VERSION, flags, 0, len(body), zlib.crc32(body)))
                f.write(body)
                f.flush()
                os.fsync(fd)
            os.replace(temp, name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            temp = None
            try:
                os.fsync(self._dir_fd)
            except OSError:
                pass   # not possible everywhere; the rename is then as durable as it gets
        except OSError as e:
            self.write_errors += 1
            if not self._writes_failing:   # one warning per run of failures, not one per export
                _logger.warning("OTLP spool: cannot write to %s (%s); keeping undelivered requests "
                                "in memory", self.directory, e)
            self._writes_failing = True
            if temp is not None:
                self._unlink(temp)
            self._next += 1   # whatever blocked this name, the next write takes another (gaps are fine)
            return False
        self._writes_failing = False
        self._next += 1
        self._files.append((name, size))
        self.bytes += size
        return True

    def oldest(self) -> Optional[QueuedRequest]:
        """The oldest valid request; what is not one is renamed aside with a warning. None,
        with ``unreadable`` set, when the oldest cannot be read just now (it stays)."""
        self.unreadable = False
        while self._files and self._dir_fd is not None:
            name, _ = self._files[0]
            body = None
            try:
                f, flags, length, crc = self._open(name)
                if f is not None:
                    with f:
                        body = _read_body(f, length, crc)
            except FileNotFoundError:   # deleted behind our back: nothing to warn about or rename
                self._forget_oldest()
                continue
            except OSError as e:
                if e.errno in TRANSIENT:
                    _logger.warning("OTLP spool: cannot read %s just now (%s); it is read again at the "
                                    "next export", self._path(name), e)
                    self.unreadable = True
                    return None
                _logger.warning("OTLP spool: cannot read %s (%s); skipping it", self._path(name), e)
            if body is not None:
                return QueuedRequest(body, flags, name)
            self._forget_oldest()
            self._set_aside(name)
        return None

    def _forget_oldest(self) -> None:
        _, size = self._files.popleft()
        self.bytes -= size

    def remove(self, request: QueuedRequest) -> None:
        """Delete ``request``, the one ``oldest()`` returned, once delivered (or refused for good)."""
        if self._files and self._files[0][0] == request.key:
            self._forget_oldest()
            if self._dir_fd is not None:
                self._unlink(request.key)
