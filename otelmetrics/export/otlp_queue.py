"""The OTLP exporter's in-memory retry queue: encoded requests that could not be
delivered yet, oldest first, bounded in bytes; when full the oldest are dropped."""
from __future__ import annotations

from collections import deque
from typing import Deque, NamedTuple, Optional

# Request flags: how a kept body was encoded, so that it is sent with the matching
# headers even by an exporter configured differently (a spool read after a restart).
GZIP = 1
JSON = 2


class QueuedRequest(NamedTuple):
    body: bytes     # exactly as sent: encoded and, with GZIP, compressed
    flags: int
    key: object = None   # where it is stored (the spool's file name); None in memory


class RetryQueue:
    """Not thread-safe: the exporter calls it with its export lock held."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.dropped = 0            # requests pushed out (or refused) because the queue is full
        self._items: Deque[QueuedRequest] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, request: QueuedRequest) -> None:
        size = len(request.body)
        if size > self.max_bytes:
            self.dropped += 1
            return
        while self.bytes + size > self.max_bytes:
            self.bytes -= len(self._items.popleft().body)
            self.dropped += 1
        self._items.append(request)
        self.bytes += size

    def oldest(self) -> Optional[QueuedRequest]:
        return self._items[0] if self._items else None

    def remove(self, request: QueuedRequest) -> None:
        """Forget ``request``, the one ``oldest()`` returned."""
        if self._items and self._items[0] is request:
            self._items.popleft()
            self.bytes -= len(request.body)
