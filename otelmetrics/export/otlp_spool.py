"""The OTLP exporter's durable spool: undelivered requests as files in a directory,
so that they survive a restart or a power loss and are sent, oldest first, later.

Each file is one request exactly as it goes on the wire (encoded, and compressed when
gzip is on) behind a 16-byte header: magic, format version, flags (gzip, JSON), body
length and CRC-32. A file is written to a temporary name, fsynced, renamed, and the
directory fsynced, so a file with a final name is complete. Names carry a sequence
number that continues from the highest one found, so the order survives a reboot of
a device whose clock restarts in the past.

One exporter per directory at a time: two processes spooling into the same directory
could reuse sequence numbers.
"""
from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from collections import deque
from typing import Deque, Optional, Tuple

from otelmetrics.export.otlp_queue import GZIP, JSON, QueuedRequest

_logger = logging.getLogger("otelmetrics.export.otlp")

_HEADER = struct.Struct("<4sBBHII")   # magic, version, flags, reserved, body length, CRC-32 of the body
_MAGIC = b"OTMS"
_VERSION = 1
_NAME = re.compile(r"\A(\d{12})\.otlp\Z")
_TEMP_PREFIX = ".tmp-"
_CORRUPT_SUFFIX = ".corrupt"


def _parse(data: bytes) -> Optional[Tuple[bytes, int]]:
    """(body, flags) of a spool file's content, or None if it is not a valid one."""
    if len(data) < _HEADER.size:
        return None
    magic, version, flags, _, length, crc = _HEADER.unpack_from(data)
    body = data[_HEADER.size:]
    if (magic != _MAGIC or version != _VERSION or flags & ~(GZIP | JSON) or length != len(body)
            or zlib.crc32(body) != crc):
        return None
    return body, flags


class Spool:
    """Bounded in bytes and files; when full, the oldest files are deleted and counted.
    Not thread-safe: the exporter calls it with its export lock held."""

    def __init__(self, directory: str, max_bytes: int, max_files: int) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.bytes = 0
        self.dropped = 0         # files deleted undelivered because the spool was full
        self.skipped = 0         # corrupt or foreign files left alone
        self.write_errors = 0
        self._writes_failing = False
        self._files: Deque[Tuple[str, int]] = deque()   # (name, size), oldest first
        self._next = 0
        self._scan()
        self._make_room(0, 0)    # the bounds may be smaller than when the files were written

    def __len__(self) -> int:
        return len(self._files)

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _scan(self) -> None:
        found = []
        foreign = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.startswith(_TEMP_PREFIX):
                    # A write cut short before its rename: incomplete by construction.
                    try:
                        os.unlink(entry.path)
                    except OSError:
                        pass
                    continue
                match = _NAME.match(entry.name)
                try:
                    if match and entry.is_file(follow_symlinks=False):
                        found.append((int(match.group(1)), entry.name, entry.stat(follow_symlinks=False).st_size))
                        continue
                except OSError:
                    pass
                foreign.append(entry.name)
        if foreign:
            self.skipped += len(foreign)
            _logger.warning("OTLP spool %s: skipping %d file(s) that are not spooled requests (%s)",
                            self.directory, len(foreign), ", ".join(sorted(foreign)[:5]))
        found.sort()
        self._files.extend((name, size) for _, name, size in found)
        self.bytes = sum(size for _, _, size in found)
        self._next = found[-1][0] + 1 if found else 0

    def _make_room(self, files: int, size: int) -> None:
        while self._files and (len(self._files) + files > self.max_files or self.bytes + size > self.max_bytes):
            name, old = self._files.popleft()
            self.bytes -= old
            self.dropped += 1
            self._unlink(name)
            _logger.warning("OTLP spool %s is full; dropped the oldest request, %s", self.directory, name)

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass
        except OSError as e:
            _logger.warning("OTLP spool: cannot delete %s: %s", self._path(name), e)

    def _fsync_directory(self) -> None:
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return   # not possible on every platform; the rename is then as durable as it gets
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def put(self, body: bytes, flags: int) -> bool:
        """Write one request; False if it is not on disk (the caller keeps it in memory)."""
        size = _HEADER.size + len(body)
        if size > self.max_bytes:
            return False
        self._make_room(1, size)
        name = "%012d.otlp" % self._next
        temp = self._path(_TEMP_PREFIX + name)
        try:
            with open(temp, "wb") as f:
                f.write(_HEADER.pack(_MAGIC, _VERSION, flags, 0, len(body), zlib.crc32(body)))
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, self._path(name))
            self._fsync_directory()
        except OSError as e:
            self.write_errors += 1
            if not self._writes_failing:   # one warning per run of failures, not one per export
                _logger.warning("OTLP spool: cannot write to %s (%s); keeping undelivered requests "
                                "in memory", self.directory, e)
            self._writes_failing = True
            try:
                os.unlink(temp)
            except OSError:
                pass
            return False
        self._writes_failing = False
        self._next += 1
        self._files.append((name, size))
        self.bytes += size
        return True

    def oldest(self) -> Optional[QueuedRequest]:
        """The oldest valid request; corrupt files are renamed aside with a warning."""
        while self._files:
            name, size = self._files[0]
            path = self._path(name)
            try:
                with open(path, "rb") as f:
                    parsed = _parse(f.read())
            except FileNotFoundError:   # deleted behind our back: nothing to warn about or rename
                self._forget_oldest()
                continue
            except OSError as e:
                _logger.warning("OTLP spool: cannot read %s (%s); skipping it", path, e)
                parsed = None
            if parsed is not None:
                return QueuedRequest(parsed[0], parsed[1], name)
            self.skipped += 1
            self._forget_oldest()
            try:
                os.replace(path, path + _CORRUPT_SUFFIX)
            except OSError:
                pass
            _logger.warning("OTLP spool: %s is not a valid spooled request; renamed to %s and skipped",
                            path, name + _CORRUPT_SUFFIX)
        return None

    def _forget_oldest(self) -> None:
        _, size = self._files.popleft()
        self.bytes -= size

    def remove(self, request: QueuedRequest) -> None:
        """Delete ``request``, the one ``oldest()`` returned, once delivered (or refused for good)."""
        if self._files and self._files[0][0] == request.key:
            self._forget_oldest()
            self._unlink(request.key)
