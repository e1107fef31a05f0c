# Included by _native.pyx: one extension module, otelmetrics._native, whose header states the directives.
"""The attribute table of a metric stream: attribute set -> cell, bounded.

One Stream exists per (instrument, view, reader); its subclasses in
aggregations.pxi add what a cell aggregates. The table grows by doubling as new
series appear and never past the cardinality limit; cell 0 is the overflow
series ``{"otel.metric.overflow": True}``, so a stream exports at most
``limit`` points. Recording into a known series allocates nothing. A delta
stream reuses the cells of series that were quiet for a whole interval, unless
a bound handle pins them.

Concurrency: every access to a stream's table and cells runs inside the
critical section of its guard (table.pxd's guard(): the instrument core that
records into it, else the stream itself) and calls no Python code while the
table or a cell is half-updated (attribute sets on the fast path hold only
builtin str/int/float/bool, whose hash and equality are C). On free-threaded
CPython that section is the lock; with the GIL it compiles to nothing and the
GIL plays its part. A collection first copies and resets the cells it exports
into a private buffer in one Python-free pass, inside the section, so a
measurement racing a collection lands in exactly one interval. That copy is a
Snapshot: point objects are built from it (outside the section) only when
someone reads them, and an encoder that writes bytes reads the copy instead;
the stream's spare buffer, which snapshots give back, is read and written
inside the same section.

``time_ns()`` is the clock every timestamp of a stream uses (clock.pxd).
"""

cimport cython
from cpython.dict cimport PyDict_Next
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.object cimport PyObject
from libc.string cimport memcpy, memset



def time_ns():
    # Wall clock in nanoseconds, the clock every timestamp of a stream uses.
    return now_ns()


cdef tuple OVERFLOW_ATTRIBUTES = ("otel.metric.overflow", True)
cdef Py_ssize_t MIN_CAP = 8


cdef class Stream:
    # Base stream: the attribute-set table. Subclasses add the aggregation.

    def __cinit__(self, Py_ssize_t limit=2000, bint delta=False, bint is_async=False,
                  object allowed_keys=None, object excluded_keys=None, *args, **kwargs):
        if limit < 1:
            raise ValueError("cardinality limit must be >= 1, got %d" % limit)
        self.limit = limit
        self.delta = delta
        self.is_async = is_async
        self.allowed = frozenset(allowed_keys) if allowed_keys is not None else None
        self.excluded = frozenset(excluded_keys) if excluded_keys else None
        self.created_ns = now_ns()
        self.last_collect_ns = self.created_ns
        self.keys = [OVERFLOW_ATTRIBUTES]
        self.cap = 0
        self.n_used = 1          # cell 0 is the overflow cell
        self.n_live = 0
        self.index = NULL
        self.index_size = 0

    def __dealloc__(self):
        PyMem_Free(self.hashes)
        PyMem_Free(self.flags)
        PyMem_Free(self.pins)
        PyMem_Free(self.starts)
        PyMem_Free(self.index)
        PyMem_Free(self.free_cells)
        PyMem_Free(self.spare)

    def _init_storage(self):
        # Called by subclasses once their own fields are set.
        self._grow(min(MIN_CAP, self.limit))

    cdef int _grow(self, Py_ssize_t newcap) except -1:
        cdef Py_ssize_t old = self.cap, c, size
        self.hashes = <Py_hash_t *>grow_array(self.hashes, newcap, sizeof(Py_hash_t))
        self.flags = <uint8_t *>grow_array(self.flags, newcap, sizeof(uint8_t))
        self.pins = <uint32_t *>grow_array(self.pins, newcap, sizeof(uint32_t))
        self.starts = <int64_t *>grow_array(self.starts, newcap, sizeof(int64_t))
        self.free_cells = <Py_ssize_t *>grow_array(self.free_cells, newcap, sizeof(Py_ssize_t))
        self.grow_cells(newcap)
        if self.ex is not None:
            self.ex.grow(newcap)
        for c in range(old, newcap):
            self.hashes[c] = 0
            self.flags[c] = 0
            self.pins[c] = 0
            self.starts[c] = 0
            self.init_cell(c)
        self.cap = newcap
        size = 8
        while size < 2 * newcap:
            size <<= 1
        if size != self.index_size:
            self._rebuild_index(size)
        return 0

    cdef int _rebuild_index(self, Py_ssize_t size) except -1:
        cdef int32_t *idx = <int32_t *>PyMem_Malloc(<size_t>size * sizeof(int32_t))
        cdef Py_ssize_t c, i, mask = size - 1
        if idx == NULL:
            raise MemoryError()
        memset(idx, 0xff, <size_t>size * sizeof(int32_t))
        for c in range(1, self.n_used):
            if self.flags[c] & CELL_LIVE:
                i = <Py_ssize_t>(<size_t>self.hashes[c] & <size_t>mask)
                while idx[i] >= 0:
                    i = (i + 1) & mask
                idx[i] = <int32_t>c
        PyMem_Free(self.index)
        self.index = idx
        self.index_size = size
        return 0

    cdef void _first_data(self, Py_ssize_t c) noexcept:
        """Cell ``c`` got its first measurement (from touch())."""
        self.flags[c] |= CELL_HASDATA
        if not self.is_async:
            # A synchronous series starts at its first measurement (the spec).
            self.starts[c] = now_ns()

    cdef Py_ssize_t cell_for(self, object attributes, bint clean) except -3:
        """Cell index of ``attributes`` (a dict or None), inserting a new series
        if there is room, else the overflow cell. NEEDS_SANITIZE when the dict
        holds anything but plain str keys and primitive values (``clean`` says
        it was sanitised already and may hold tuples)."""
        cdef Py_hash_t h
        cdef Py_ssize_t n, c
        cdef dict d
        cdef PyObject *noted[2 * NOTED_PAIRS]
        if attributes is None:
            d = None
            h = EMPTY_SET_HASH
            n = 0
        elif type(attributes) is dict:
            d = <dict>attributes
            if not hash_attributes(d, self.allowed, self.excluded, clean, &h, &n, noted):
                return NEEDS_SANITIZE
        else:
            return NEEDS_SANITIZE
        c = find_cell(self, h, d, n, noted)
        return c if c >= 0 else self._insert(h, d, n)

    cdef Py_ssize_t _insert(self, Py_hash_t h, dict d, Py_ssize_t n) except -3:
        cdef Py_ssize_t c, i, mask, newcap, j = 0
        cdef tuple stored
        cdef PyObject *k
        cdef PyObject *v
        cdef Py_ssize_t pos = 0
        if self.n_live >= self.limit - 1 and self.delta and not self.is_async and not self.reclaim_tried:
            self._reclaim()
        if self.n_live >= self.limit - 1:
            return self._overflow()
        # Allocate before touching the table: allocation may run the garbage
        # collector, hence other threads, which may insert meanwhile.
        pending = self.new_cell_objects()
        if d is None or n == 0:
            stored = ()
        else:
            stored = PyTuple_New(2 * n)
            while PyDict_Next(d, &pos, &k, &v):
                if (self.allowed is None or <object>k in self.allowed) and (
                        self.excluded is None or <object>k not in self.excluded):
                    Py_INCREF(<object>k)
                    PyTuple_SET_ITEM(stored, j, <object>k)
                    Py_INCREF(<object>v)
                    PyTuple_SET_ITEM(stored, j + 1, <object>v)
                    j += 2
        # From here on no Python code runs: re-check what other threads may have done.
        c = find_cell(self, h, d, n, NULL)
        if c >= 0:
            return c
        if self.n_live >= self.limit - 1:
            return self._overflow()
        if self.n_free > 0:
            self.n_free -= 1
            c = self.free_cells[self.n_free]
        else:
            if self.n_used >= self.cap:
                newcap = min(max(2 * self.cap, MIN_CAP), self.limit)
                self._grow(newcap)
            c = self.n_used
            self.n_used += 1
            self.keys.append(None)
        self.keys[c] = stored
        self.hashes[c] = h
        self.flags[c] = CELL_LIVE
        self.pins[c] = 0
        self.starts[c] = self.last_collect_ns   # async; a sync series' start is its first measurement
        self.init_cell(c)
        self.adopt_cell(c, pending)
        self.n_live += 1
        mask = self.index_size - 1
        i = <Py_ssize_t>(<size_t>h & <size_t>mask)
        while self.index[i] >= 0:
            i = (i + 1) & mask
        self.index[i] = <int32_t>c
        return c

    cdef inline Py_ssize_t _overflow(self) noexcept:
        self.overflowed += 1
        if not (self.flags[OVERFLOW_CELL] & CELL_LIVE):
            self.flags[OVERFLOW_CELL] |= CELL_LIVE
            self.starts[OVERFLOW_CELL] = self.last_collect_ns
        return OVERFLOW_CELL

    cdef Py_ssize_t _reclaim(self) except -1:
        """Delta only: free the cells with nothing recorded in this interval
        (their data went out with the last collection), once per interval."""
        cdef Py_ssize_t c, freed = 0
        self.reclaim_tried = True
        for c in range(1, self.n_used):
            if (self.flags[c] & CELL_LIVE) and not (self.flags[c] & CELL_TOUCHED) and self.pins[c] == 0:
                self._free_cell(c)
                freed += 1
        if freed:
            self._rebuild_index(self.index_size)
        return freed

    cdef void _free_cell(self, Py_ssize_t c) noexcept:
        if self.ex is not None:
            self.ex.clear_cell(c)
        self.keys[c] = None
        self.flags[c] = 0
        self.free_cells[self.n_free] = c
        self.n_free += 1
        self.n_live -= 1

    def set_owner(self, object owner):
        # The instrument core that will record into this stream: its critical section
        # guards the stream from now on (before the stream is collected or recorded into).
        self.owner = owner

    def set_start(self, int64_t start_ns):
        # The instrument's creation time: the first delta interval's start.
        self.created_ns = start_ns
        self.last_collect_ns = start_ns

    # -- exemplars (kept by exemplars.pxi) -----------------------------------

    def enable_exemplars(self, Py_ssize_t slots, bint aligned=False):
        # Keep up to ``slots`` exemplars per series (``aligned``: one per
        # histogram bucket). Storage is allocated with the first sample.
        if slots < 1:
            raise ValueError("exemplar reservoir size must be >= 1, got %d" % slots)
        self.ex = StreamExemplars(slots, aligned, self.cap, self.allowed, self.excluded)

    def enable_custom_exemplars(self, factory, aggregation_type, first=None):
        # A user reservoir (``offer(value, time_unix_nano, attributes, context)``,
        # ``collect(point_attributes)``) per series, made by ``factory(aggregation_type)``.
        self.ex = StreamExemplars.custom(factory, aggregation_type, first, self.cap, self.allowed, self.excluded)

    @property
    def ex_k(self):
        # Reservoir slots per series (0: no exemplars, or a user's reservoirs).
        return self.ex.k if self.ex is not None else 0

    cdef int offer(self, Py_ssize_t c, bint isint, int64_t iv, double dv, object attributes,
                   int64_t t, uint64_t thi, uint64_t tlo, uint64_t span, object context) except -1:
        """Offer a sampled measurement of cell ``c`` to the stream's exemplars."""
        cdef StreamExemplars ex = self.ex
        if ex is not None:
            ex.offer(c, <tuple>self.keys[c], self.bucket_of(dv if not isint else <double>iv) if ex.aligned else 0,
                     isint, iv, dv, attributes, t, thi, tlo, span, context)
        return 0

    # -- bound handles -------------------------------------------------------

    def pin(self, object attributes):
        # Cell for ``attributes`` (sanitised dict or None), kept for a bound handle.
        cdef Py_ssize_t c
        with cython.critical_section(guard(self)):
            c = self.cell_for(attributes, True)
            if c >= 0:
                self.pins[c] += 1
        return c

    cdef void unpin(self, Py_ssize_t c) noexcept:
        """A bound handle let go of cell ``c`` (the caller holds the guard's critical section)."""
        if 0 <= c < self.n_used and self.pins[c] > 0:
            self.pins[c] -= 1

    # -- recording (Python-level entry points; the instruments use the C ones) --

    def record(self, object value, object attributes=None):
        # Record one measurement: an int that fits int64 or a float, with a
        # sanitised attribute dict (for tests; instruments use the C entry).
        cdef Py_ssize_t c
        cdef int64_t iv = 0
        cdef double dv = 0.0
        cdef bint isint = type(value) is int
        if isint:
            iv = value
        else:
            dv = value
        with cython.critical_section(guard(self)):
            c = self.cell_for(attributes, True)
            if c != NEEDS_SANITIZE:
                if isint:
                    self.add_i(c, iv)
                else:
                    self.add_d(c, dv)
        if c == NEEDS_SANITIZE:
            raise TypeError("attributes must be sanitised first")

    # -- aggregation hooks ----------------------------------------------------

    cdef int grow_cells(self, Py_ssize_t newcap) except -1:
        return 0

    cdef void init_cell(self, Py_ssize_t c) noexcept:
        pass

    cdef object new_cell_objects(self):
        """Per-series Python objects a subclass needs (allocated before the
        table changes); handed to adopt_cell."""
        return None

    cdef void adopt_cell(self, Py_ssize_t c, object pending) noexcept:
        pass

    cdef void add_i(self, Py_ssize_t c, int64_t v) noexcept:
        touch(self, c)

    cdef void add_d(self, Py_ssize_t c, double v) noexcept:
        touch(self, c)

    cdef Py_ssize_t bucket_of(self, double v) noexcept:
        """The histogram bucket of ``v`` (for bucket-aligned exemplar reservoirs)."""
        return 0

    cdef bint exportable(self, Py_ssize_t c) noexcept:
        """Whether cell ``c`` yields a point in this collection."""
        if self.delta or self.is_async:
            return (self.flags[c] & CELL_TOUCHED) != 0
        return (self.flags[c] & CELL_HASDATA) != 0

    cdef void snapshot_cell(self, Py_ssize_t c, char *dst, bint reset) noexcept:
        pass

    cdef object make_point(self, char *src, object attributes, object start, object now, list exemplars):
        return None

    # -- collection ------------------------------------------------------------

    cpdef list collect(self, int64_t now):
        # Points for this collection interval, ending at ``now`` (ns).
        return self.collect_snapshot(now).points()

    @property
    def series(self):
        # Live series, not counting the overflow cell.
        return self.n_live

    @property
    def capacity(self):
        return self.cap

    # -- collection without points -------------------------------------------

    cdef bint stable_snapshot(self) noexcept:
        """Whether a snapshot's records stay valid after the next collection (a
        subclass whose records refer to cells it goes on using says no: its points
        are built at once)."""
        return True

    cdef Py_ssize_t snapshot_record_size(self) noexcept:
        """Bytes of one cell's record in this collection's snapshot (inside the guard's
        section, before the copy): ``snap_size``, unless a subclass stores this
        collection's records more compactly."""
        return self.snap_size

    cpdef Snapshot collect_snapshot(self, int64_t now):
        # This collection interval, ending at ``now`` (ns), as a Snapshot: the
        # exported cells copied (and for delta reset) in one Python-free pass into a
        # buffer the snapshot owns, so it stays valid whatever later collections do.
        # Points are built from it when asked (at once when exemplars were taken or
        # the stream's records are not stable).
        cdef Py_ssize_t n_cells, c, k = 0, i
        cdef Py_ssize_t rec
        cdef Py_ssize_t need
        cdef bint reset = self.delta or self.is_async
        cdef bint evicted = False
        cdef int64_t interval_start
        cdef char *buf
        cdef list attrs
        cdef Snapshot snap = Snapshot.__new__(Snapshot)
        cdef TakenExemplars ex = None
        cdef om_section section
        om_section_begin(&section, guard(self))     # the whole copy and reset, and the spare
        try:
            n_cells = self.n_used
            rec = sizeof(int64_t) + self.snapshot_record_size()
            need = n_cells * rec if n_cells else 1
            interval_start = self.last_collect_ns
            attrs = [None] * n_cells
            ex = self.ex.begin_collect(n_cells) if self.ex is not None else None
            self._snapshot_into(snap, n_cells, rec, need, reset, interval_start, attrs, ex, now)
        finally:
            om_section_end(&section)
        if ex is not None or not self.stable_snapshot():
            snap.points()
            snap._release()     # nobody else has the snapshot yet
        return snap

    cdef int _snapshot_into(self, Snapshot snap, Py_ssize_t n_cells, Py_ssize_t rec, Py_ssize_t need,
                            bint reset, int64_t interval_start, list attrs, TakenExemplars ex,
                            int64_t now) except -1:
        """collect_snapshot's copy and reset, inside the guard's critical section."""
        cdef Py_ssize_t c, k = 0, i
        cdef bint evicted = False
        cdef char *buf
        snap.stream = self
        snap.rec = rec
        snap.now = now
        snap.attrs = attrs
        snap.ex = ex
        if self.spare != NULL and self.spare_cap >= need:
            snap.buf, snap.cap = self.spare, self.spare_cap      # reuse: no page faults
            self.spare, self.spare_cap = NULL, 0
        else:
            snap.buf = <char *>PyMem_Malloc(<size_t>need)
            if snap.buf == NULL:
                raise MemoryError()
            snap.cap = need
        buf = snap.buf
        # No Python code from here: copy (and for delta reset) what is exported.
        for i in range(1, n_cells + 1):
            c = i if i < n_cells else OVERFLOW_CELL   # the overflow series last
            if not (self.flags[c] & CELL_LIVE):
                continue
            if self.exportable(c):
                (<int64_t *>(buf + k * rec))[0] = interval_start if self.delta else self.starts[c]
                self.snapshot_cell(c, buf + k * rec + sizeof(int64_t), reset)
                if ex is not None:
                    ex.take(k, c)
                attrs[k] = self.keys[c]
                k += 1
                self.flags[c] &= ~CELL_TOUCHED
            elif self.delta and not self.is_async and c != OVERFLOW_CELL and self.pins[c] == 0:
                # Quiet for a whole delta interval: free the slot for new series.
                self._free_cell(c)
                evicted = True
        snap.count = k
        if evicted:
            self._rebuild_index(self.index_size)
        self.last_collect_ns = now
        self.reclaim_tried = False
        return 0


cdef class Snapshot:
    # One collection of one stream (made by ``Stream.collect_snapshot``): the
    # copied records, and the points built from them on the first ``points()``.
    # Its buffer goes back to the stream for the next collection when the snapshot
    # is dropped (the stream keeps one spare).

    def __dealloc__(self):
        self._release()

    def __len__(self):
        return self.count

    @property
    def points_built(self):
        # Whether the points exist (then an encoder reads them, not the records).
        return self.built is not None

    cpdef list points(self):
        # The points, built once from the records. The records stay until the
        # snapshot goes (another thread may be reading them); two threads asking at
        # once get the same list (the snapshot's critical section).
        with cython.critical_section(self):
            return self._build()

    cdef list _build(self):
        cdef Py_ssize_t i
        cdef list points
        cdef TakenExemplars ex = self.ex
        if self.built is not None:
            return self.built
        points = [None] * self.count
        py_now = self.now
        for i in range(self.count):
            points[i] = self._point(i, py_now, ex.build(i, self.attrs[i]) if ex is not None else [])
        self.built = points
        self.ex = None
        return points

    cdef object _point(self, Py_ssize_t i, object now, list exemplars):
        """The point of record ``i`` (its start time first, then the stream's record)."""
        cdef char *rec = self.buf + i * self.rec
        return self.stream.make_point(rec + sizeof(int64_t), self.attrs[i], (<int64_t *>rec)[0], now,
                                      exemplars)

    cdef object point_at(self, Py_ssize_t i):
        """Point ``i`` (0 <= i < count): built from its record and not kept (the console's
        writer makes them one at a time), or, once the points are the data, the built one."""
        with cython.critical_section(self):
            if not records_readable(self):
                return self._build()[i]
            return self._point(i, self.now, [])

    def slice(self, Py_ssize_t start, Py_ssize_t stop):
        # A snapshot of records ``start`` to ``stop`` (clamped, as a list slice), copied,
        # for a batch of an export: the byte writers write it from its records as from
        # this one's. None when this one's points are the data (built, or exemplars taken):
        # slice those.
        cdef Snapshot part
        cdef Py_ssize_t n
        with cython.critical_section(self):
            if not records_readable(self):
                return None
            start = min(max(start, 0), self.count)
            stop = min(max(stop, start), self.count)
            n = stop - start
            part = Snapshot.__new__(Snapshot)
            part.stream = self.stream
            part.rec = self.rec
            part.now = self.now
            part.attrs = self.attrs[start:stop]
            part.cap = max(n * self.rec, 1)
            part.buf = <char *>PyMem_Malloc(<size_t>part.cap)
            if part.buf == NULL:
                raise MemoryError()
            memcpy(part.buf, self.buf + start * self.rec, n * self.rec)
            part.count = n
            return part

    cdef void _release(self) noexcept:
        """The buffer back to the stream as its spare (in the stream's critical
        section: a dropped snapshot may go in any thread), or freed."""
        cdef Stream s = self.stream
        cdef om_section section
        if self.buf == NULL:
            return
        if s is None:
            PyMem_Free(self.buf)
            self.buf = NULL
            return
        om_section_begin(&section, guard(s))
        if self.cap > s.spare_cap:
            PyMem_Free(s.spare)
            s.spare, s.spare_cap = self.buf, self.cap
        else:
            PyMem_Free(self.buf)
        self.buf = NULL
        om_section_end(&section)
