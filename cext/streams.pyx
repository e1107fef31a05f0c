"""Metric streams: a bounded table from attribute set to cell, and the
aggregations (sum, last value, explicit-bucket histogram) computed in the cells.

One Stream exists per (instrument, view, reader). Its storage grows by doubling
as new series appear and never past the cardinality limit; cell 0 is the
overflow series ``{"otel.metric.overflow": True}``, so a stream exports at most
``limit`` points. Recording into a known series allocates nothing.

Concurrency: every operation runs with the GIL held and calls no Python code
while the table or a cell is half-updated (attribute sets on the fast path hold
only builtin str/int/float/bool, whose hash and equality are C). A collection
first copies and resets the cells it exports into a private buffer in one
Python-free pass, then builds point objects from that copy, so a measurement
racing a collection lands in exactly one interval.
"""

from cpython.dict cimport PyDict_Next
from cpython.list cimport PyList_GET_ITEM
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM, PyTuple_GET_SIZE
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.object cimport PyObject
from libc.string cimport memset, memcpy
from libc.math cimport INFINITY
from libc.stdint cimport int64_t, uint64_t, uint32_t, uint8_t, int32_t

from otelmetrics._native.attributes cimport hash_attributes, same_attributes, EMPTY_SET_HASH
from otelmetrics._native.points cimport NumberDataPoint, HistogramDataPoint
from otelmetrics._native.reservoirs cimport Reservoirs, ExSlot, build_exemplars
from cpython.ref cimport Py_XDECREF

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    int CLOCK_REALTIME

cdef extern from *:
    """
    static inline int om_add_overflow(int64_t a, int64_t b, int64_t *r) {
        return __builtin_add_overflow(a, b, r);
    }
    static inline int om_sub_overflow(int64_t a, int64_t b, int64_t *r) {
        return __builtin_sub_overflow(a, b, r);
    }
    """
    bint om_add_overflow(int64_t a, int64_t b, int64_t *r) nogil
    bint om_sub_overflow(int64_t a, int64_t b, int64_t *r) nogil


cdef int64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


def time_ns():
    """Wall clock in nanoseconds, the clock every timestamp of a stream uses."""
    return now_ns()


# Cell flags.
cdef enum:
    CELL_TOUCHED = 1        # measured since the last collection
    CELL_LIVE = 2           # holds a series (overflow cell: has ever been used)
    CELL_HASDATA = 4        # measured at least once (a bound handle may pin an empty cell)

cdef tuple OVERFLOW_ATTRIBUTES = ("otel.metric.overflow", True)
cdef Py_ssize_t MIN_CAP = 8


cdef void *_grow_array(void *p, Py_ssize_t n, size_t item) except NULL:
    cdef void *q = PyMem_Realloc(p, <size_t>n * item if n > 0 else item)
    if q == NULL:
        raise MemoryError()
    return q


cdef class Stream:
    """Base stream: the attribute-set table. Subclasses add the aggregation."""

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

    def _init_storage(self):
        """Called by subclasses once their own fields are set."""
        self._grow(min(MIN_CAP, self.limit))

    cdef int _grow(self, Py_ssize_t newcap) except -1:
        cdef Py_ssize_t old = self.cap, c, size
        self.hashes = <Py_hash_t *>_grow_array(self.hashes, newcap, sizeof(Py_hash_t))
        self.flags = <uint8_t *>_grow_array(self.flags, newcap, sizeof(uint8_t))
        self.pins = <uint32_t *>_grow_array(self.pins, newcap, sizeof(uint32_t))
        self.starts = <int64_t *>_grow_array(self.starts, newcap, sizeof(int64_t))
        self.free_cells = <Py_ssize_t *>_grow_array(self.free_cells, newcap, sizeof(Py_ssize_t))
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

    cdef inline void _touch(self, Py_ssize_t c) noexcept:
        if not (self.flags[c] & CELL_HASDATA):
            # A synchronous series starts at its first measurement (the spec).
            self.flags[c] |= CELL_HASDATA
            if not self.is_async:
                self.starts[c] = now_ns()
        self.flags[c] |= CELL_TOUCHED

    cdef Py_ssize_t cell_for(self, object attributes, bint clean) except -3:
        """Cell index of ``attributes`` (a dict or None), inserting a new series
        if there is room, else the overflow cell. NEEDS_SANITIZE when the dict
        holds anything but plain str keys and primitive values (``clean`` says
        it was sanitised already and may hold tuples)."""
        cdef Py_hash_t h
        cdef Py_ssize_t n, i, c, mask
        cdef dict d
        cdef PyObject *stored
        if attributes is None:
            d = None
            h = EMPTY_SET_HASH
            n = 0
        elif type(attributes) is dict:
            d = <dict>attributes
            if not hash_attributes(d, self.allowed, self.excluded, clean, &h, &n):
                return NEEDS_SANITIZE
        else:
            return NEEDS_SANITIZE
        c = self._find(h, d, n)
        return c if c >= 0 else self._insert(h, d, n)

    cdef inline Py_ssize_t _find(self, Py_hash_t h, dict d, Py_ssize_t n) except -3:
        """The cell holding these attributes, or -1. Runs no Python code."""
        cdef Py_ssize_t i, c, mask = self.index_size - 1
        cdef PyObject *stored
        i = <Py_ssize_t>(<size_t>h & <size_t>mask)
        while True:
            c = self.index[i]
            if c < 0:
                return -1
            if self.hashes[c] == h:
                stored = PyList_GET_ITEM(self.keys, c)
                if PyTuple_GET_SIZE(<tuple>stored) == 2 * n and (
                        n == 0 or same_attributes(<tuple>stored, d)):
                    return c
            i = (i + 1) & mask

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
        c = self._find(h, d, n)
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

    def set_start(self, int64_t start_ns):
        """The instrument's creation time: the first delta interval's start."""
        self.created_ns = start_ns
        self.last_collect_ns = start_ns

    # -- exemplars ------------------------------------------------------------

    def enable_exemplars(self, Py_ssize_t slots, bint aligned=False):
        """Keep up to ``slots`` exemplars per series (``aligned``: one per
        histogram bucket). Storage is allocated with the first sample."""
        if slots < 1:
            raise ValueError("exemplar reservoir size must be >= 1, got %d" % slots)
        self.ex_k = slots
        self.ex_aligned = aligned

    cdef Py_ssize_t bucket_of(self, double v) noexcept:
        return 0

    def enable_custom_exemplars(self, factory, aggregation_type, first=None):
        """A user reservoir (``offer(value, time_unix_nano, attributes, context)``,
        ``collect(point_attributes)``) per series, made by ``factory(aggregation_type)``."""
        self.ex_factory = factory
        self.ex_agg_type = aggregation_type
        self.ex_custom = {}
        self.ex_k = 0
        self._first_custom = first

    cdef object _custom_reservoir(self, Py_ssize_t c, bint create):
        entry = self.ex_custom.get(c)
        key = self.keys[c]
        if entry is not None and entry[0] is key:
            return entry[1]
        if not create:
            return None
        reservoir, self._first_custom = self._first_custom, None
        if reservoir is None:
            reservoir = self.ex_factory(self.ex_agg_type)
        self.ex_custom[c] = (key, reservoir)     # a reused cell gets a fresh reservoir
        return reservoir

    cdef int offer(self, Py_ssize_t c, bint isint, int64_t iv, double dv, object attributes,
                   int64_t t, uint64_t thi, uint64_t tlo, uint64_t span, object context) except -1:
        """Offer a sampled measurement of cell ``c``; ``attributes`` is the full
        (sanitised or plain) set, of which the view-dropped part is kept."""
        cdef dict filtered = None
        if self.ex_factory is not None:
            try:
                self._custom_reservoir(c, True).offer(iv if isint else dv, t, attributes or {}, context)
            except Exception as e:
                _warn_custom_reservoir(self, e)
            return 0
        if self.ex_k == 0:
            return 0
        if self.ex is None:
            # Seeded per stream and moment, so that separate reservoirs don't pick alike.
            self.ex = Reservoirs(self.ex_k, self.ex_aligned, self.cap,
                                 <uint64_t>now_ns() ^ (<uint64_t><size_t><void *>self * <uint64_t>0x9E3779B97F4A7C15ULL))
        if (self.allowed is not None or self.excluded is not None) and type(attributes) is dict:
            filtered = {k: v for k, v in (<dict>attributes).items()
                        if not ((self.allowed is None or k in self.allowed)
                                and (self.excluded is None or k not in self.excluded))}
        self.ex.offer(c, self.bucket_of(dv if not isint else <double>iv) if self.ex_aligned else 0,
                      isint, iv, dv, t, thi, tlo, span, filtered)
        return 0

    def _collect_custom(self, Py_ssize_t c, tuple flat):
        reservoir = self._custom_reservoir(c, False)
        if reservoir is None:
            return []
        try:
            return list(reservoir.collect({flat[j]: flat[j + 1] for j in range(0, len(flat), 2)}) or ())
        except Exception as e:
            _warn_custom_reservoir(self, e)
            return []

    # -- bound handles -------------------------------------------------------

    def pin(self, object attributes):
        """Cell for ``attributes`` (sanitised dict or None), kept for a bound handle."""
        cdef Py_ssize_t c = self.cell_for(attributes, True)
        if c >= 0:
            self.pins[c] += 1
        return c

    def unpin(self, Py_ssize_t c):
        if 0 <= c < self.n_used and self.pins[c] > 0:
            self.pins[c] -= 1

    # -- recording (Python-level entry points; the instruments use the C ones) --

    def record(self, object value, object attributes=None):
        """Record one measurement: an int that fits int64 or a float, with a
        sanitised attribute dict (for tests; instruments use the C entry)."""
        cdef Py_ssize_t c = self.cell_for(attributes, True)
        if c == NEEDS_SANITIZE:
            raise TypeError("attributes must be sanitised first")
        if type(value) is int:
            self.add_i(c, value)
        else:
            self.add_d(c, value)

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
        self._touch(c)

    cdef void add_d(self, Py_ssize_t c, double v) noexcept:
        self._touch(c)

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
        """Points for this collection interval, ending at ``now`` (ns)."""
        cdef Py_ssize_t n_cells = self.n_used, c, k = 0, i, j
        cdef Py_ssize_t rec = sizeof(int64_t) + self.snap_size
        cdef bint reset = self.delta or self.is_async
        cdef bint evicted = False
        cdef int64_t interval_start = self.last_collect_ns
        cdef char *buf
        cdef list attrs = [None] * n_cells
        cdef list points
        cdef Reservoirs ex = self.ex
        cdef ExSlot *exbuf = NULL
        cdef Py_ssize_t *ex_n = NULL
        cdef Py_ssize_t ek = self.ex_k
        cdef list sel = [None] * n_cells if self.ex_factory is not None else None
        buf = <char *>PyMem_Malloc(<size_t>(n_cells * rec) if n_cells else 1)
        if buf == NULL:
            raise MemoryError()
        if ex is not None:
            exbuf = <ExSlot *>PyMem_Malloc(<size_t>(n_cells * ek) * sizeof(ExSlot) + 1)
            ex_n = <Py_ssize_t *>PyMem_Malloc(<size_t>n_cells * sizeof(Py_ssize_t) + 1)
            if exbuf == NULL or ex_n == NULL:
                PyMem_Free(buf)
                PyMem_Free(exbuf)
                PyMem_Free(ex_n)
                raise MemoryError()
        try:
            # Phase 1, no Python code: copy (and for delta reset) what is exported.
            for i in range(1, n_cells + 1):
                c = i if i < n_cells else OVERFLOW_CELL   # the overflow series last
                if not (self.flags[c] & CELL_LIVE):
                    continue
                if self.exportable(c):
                    (<int64_t *>(buf + k * rec))[0] = interval_start if self.delta else self.starts[c]
                    self.snapshot_cell(c, buf + k * rec + sizeof(int64_t), reset)
                    if ex is not None:
                        ex_n[k] = ex.take(c, exbuf + k * ek)
                    elif sel is not None:
                        sel[k] = c
                    attrs[k] = self.keys[c]
                    k += 1
                    self.flags[c] &= ~CELL_TOUCHED
                elif self.delta and not self.is_async and c != OVERFLOW_CELL and self.pins[c] == 0:
                    # Quiet for a whole delta interval: free the slot for new series.
                    self._free_cell(c)
                    evicted = True
            if evicted:
                self._rebuild_index(self.index_size)
            self.last_collect_ns = now
            self.reclaim_tried = False
            # Phase 2: points from the private copy.
            points = [None] * k
            py_now = now
            for i in range(k):
                if ex is not None:
                    exemplars = build_exemplars(exbuf + i * ek, ex_n[i])
                elif sel is not None:
                    exemplars = self._collect_custom(sel[i], attrs[i])
                else:
                    exemplars = []
                points[i] = self.make_point(buf + i * rec + sizeof(int64_t), attrs[i],
                                            (<int64_t *>(buf + i * rec))[0], py_now, exemplars)
            return points
        finally:
            PyMem_Free(buf)
            if exbuf != NULL:
                # References not handed to Exemplar objects (only after an error).
                for i in range(k):
                    for j in range(ex_n[i]):
                        Py_XDECREF(exbuf[i * ek + j].filtered)
                        exbuf[i * ek + j].filtered = NULL
                PyMem_Free(exbuf)
                PyMem_Free(ex_n)

    @property
    def series(self):
        """Live series, not counting the overflow cell."""
        return self.n_live

    @property
    def capacity(self):
        return self.cap


cdef void _warn_custom_reservoir(Stream s, Exception e):
    if not s.ex_warned:         # once per stream
        s.ex_warned = True
        import logging
        logging.getLogger("otelmetrics").warning(
            "custom exemplar reservoir failed (%s: %s); its exemplars are skipped", type(e).__name__, e)


cdef inline object _number(bint isfloat, int64_t i, double d):
    return d if isfloat else i


# Snapshot record of a number cell.
ctypedef struct NumSnap:
    int64_t i
    double d
    uint8_t isfloat


cdef class NumberStream(Stream):
    """A number per series: int64 while every measurement is an int (exported
    as an int, as_int over OTLP), double from the first float on."""

    def __init__(self, Py_ssize_t limit=2000, bint delta=False, bint is_async=False,
                 object allowed_keys=None, object excluded_keys=None):
        self.snap_size = sizeof(NumSnap)
        self._init_storage()

    def __dealloc__(self):
        PyMem_Free(self.ival)
        PyMem_Free(self.dval)
        PyMem_Free(self.isfloat)

    cdef int grow_cells(self, Py_ssize_t newcap) except -1:
        self.ival = <int64_t *>_grow_array(self.ival, newcap, sizeof(int64_t))
        self.dval = <double *>_grow_array(self.dval, newcap, sizeof(double))
        self.isfloat = <uint8_t *>_grow_array(self.isfloat, newcap, sizeof(uint8_t))
        return 0

    cdef void init_cell(self, Py_ssize_t c) noexcept:
        self.ival[c] = 0
        self.dval[c] = 0.0
        self.isfloat[c] = 0

    cdef void snapshot_cell(self, Py_ssize_t c, char *dst, bint reset) noexcept:
        cdef NumSnap *s = <NumSnap *>dst
        s.i = self.ival[c]
        s.d = self.dval[c]
        s.isfloat = self.isfloat[c]

    cdef object make_point(self, char *src, object attributes, object start, object now, list exemplars):
        cdef NumSnap *s = <NumSnap *>src
        cdef NumberDataPoint p = NumberDataPoint.__new__(NumberDataPoint)
        p._flat_attributes = attributes
        p.start_time_unix_nano = None if self.gauge_points else start
        p.time_unix_nano = now
        p.value = _number(s.isfloat, s.i, s.d)
        p.exemplars = exemplars
        return p


cdef class SumStream(NumberStream):
    """Sum of measurements. An int64 overflow switches the cell to double
    rather than wrapping. Asynchronous streams receive each callback's
    cumulative observation; several observations of one series in a
    collection add up (as in the reference SDK)."""

    def __dealloc__(self):
        PyMem_Free(self.prev_i)
        PyMem_Free(self.prev_d)
        PyMem_Free(self.prev_float)

    cdef int grow_cells(self, Py_ssize_t newcap) except -1:
        NumberStream.grow_cells(self, newcap)
        if self.is_async and self.delta:
            self.prev_i = <int64_t *>_grow_array(self.prev_i, newcap, sizeof(int64_t))
            self.prev_d = <double *>_grow_array(self.prev_d, newcap, sizeof(double))
            self.prev_float = <uint8_t *>_grow_array(self.prev_float, newcap, sizeof(uint8_t))
        return 0

    cdef void init_cell(self, Py_ssize_t c) noexcept:
        NumberStream.init_cell(self, c)
        if self.prev_i != NULL:
            self.prev_i[c] = 0
            self.prev_d[c] = 0.0
            self.prev_float[c] = 0

    cdef void add_i(self, Py_ssize_t c, int64_t v) noexcept:
        cdef int64_t r
        self._touch(c)
        if self.isfloat[c]:
            self.dval[c] += <double>v
        elif om_add_overflow(self.ival[c], v, &r):
            self.isfloat[c] = 1
            self.dval[c] = <double>self.ival[c] + <double>v
        else:
            self.ival[c] = r

    cdef void add_d(self, Py_ssize_t c, double v) noexcept:
        self._touch(c)
        if self.isfloat[c]:
            self.dval[c] += v
        else:
            self.isfloat[c] = 1
            self.dval[c] = <double>self.ival[c] + v

    cdef void snapshot_cell(self, Py_ssize_t c, char *dst, bint reset) noexcept:
        cdef NumSnap *s = <NumSnap *>dst
        cdef int64_t r, cur_i
        cdef double cur_d
        cdef uint8_t cur_float
        NumberStream.snapshot_cell(self, c, dst, reset)
        if self.is_async and self.delta:
            # Cumulative observation -> change since the previous collection;
            # the previous value keeps the type it was observed with.
            cur_float = s.isfloat
            cur_i = s.i
            cur_d = s.d
            if cur_float or self.prev_float[c]:
                s.d = (cur_d if cur_float else <double>cur_i) - (
                    self.prev_d[c] if self.prev_float[c] else <double>self.prev_i[c])
                s.isfloat = 1
            elif om_sub_overflow(cur_i, self.prev_i[c], &r):
                s.d = <double>cur_i - <double>self.prev_i[c]
                s.isfloat = 1
            else:
                s.i = r
            self.prev_float[c] = cur_float
            self.prev_i[c] = cur_i
            self.prev_d[c] = cur_d
        if reset:
            NumberStream.init_cell(self, c)


cdef class LastValueStream(NumberStream):
    """Last value (gauges). Points carry no start time, as in the reference SDK.
    A synchronous cumulative stream keeps exporting each series' last value;
    otherwise a series is exported only when it got a value in the interval."""

    def __cinit__(self, *args, **kwargs):
        self.gauge_points = True

    cdef void add_i(self, Py_ssize_t c, int64_t v) noexcept:
        self._touch(c)
        self.ival[c] = v
        self.isfloat[c] = 0

    cdef void add_d(self, Py_ssize_t c, double v) noexcept:
        self._touch(c)
        self.dval[c] = v
        self.isfloat[c] = 1


ctypedef struct HistSnap:
    uint64_t count
    int64_t isum
    double dsum
    double vmin
    double vmax
    uint8_t isfloat
    uint8_t minmax_float
    # followed by nb + 1 bucket counts


cdef class HistogramStream(Stream):
    """Explicit-bucket histogram: bucket i counts values in (b[i-1], b[i]],
    the last one (b[-1], +inf). Sum, count, min and max alongside."""

    def __init__(self, Py_ssize_t limit=2000, bint delta=False, bint is_async=False,
                 object allowed_keys=None, object excluded_keys=None,
                 boundaries=(), bint record_min_max=True):
        cdef Py_ssize_t j
        self.boundaries = tuple(float(b) for b in boundaries)
        self.nb = len(self.boundaries)
        self.bounds = <double *>_grow_array(NULL, self.nb, sizeof(double))
        for j in range(self.nb):
            self.bounds[j] = self.boundaries[j]
        self.record_min_max = record_min_max
        self.snap_size = sizeof(HistSnap) + (self.nb + 1) * sizeof(uint64_t)
        self._init_storage()

    def __dealloc__(self):
        PyMem_Free(self.bounds)
        PyMem_Free(self.counts)
        PyMem_Free(self.count)
        PyMem_Free(self.isum)
        PyMem_Free(self.dsum)
        PyMem_Free(self.isfloat)
        PyMem_Free(self.minmax_float)
        PyMem_Free(self.vmin)
        PyMem_Free(self.vmax)

    cdef int grow_cells(self, Py_ssize_t newcap) except -1:
        self.counts = <uint64_t *>_grow_array(self.counts, newcap * (self.nb + 1), sizeof(uint64_t))
        self.count = <uint64_t *>_grow_array(self.count, newcap, sizeof(uint64_t))
        self.isum = <int64_t *>_grow_array(self.isum, newcap, sizeof(int64_t))
        self.dsum = <double *>_grow_array(self.dsum, newcap, sizeof(double))
        self.isfloat = <uint8_t *>_grow_array(self.isfloat, newcap, sizeof(uint8_t))
        self.minmax_float = <uint8_t *>_grow_array(self.minmax_float, newcap, sizeof(uint8_t))
        self.vmin = <double *>_grow_array(self.vmin, newcap, sizeof(double))
        self.vmax = <double *>_grow_array(self.vmax, newcap, sizeof(double))
        return 0

    cdef void init_cell(self, Py_ssize_t c) noexcept:
        memset(self.counts + c * (self.nb + 1), 0, (self.nb + 1) * sizeof(uint64_t))
        self.count[c] = 0
        self.isum[c] = 0
        self.dsum[c] = 0.0
        self.isfloat[c] = 0
        self.minmax_float[c] = 0
        self.vmin[c] = INFINITY
        self.vmax[c] = -INFINITY

    cdef Py_ssize_t bucket_of(self, double v) noexcept:
        # First boundary >= v (upper bounds inclusive): binary search.
        cdef Py_ssize_t lo = 0, hi = self.nb, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.bounds[mid] < v:
                lo = mid + 1
            else:
                hi = mid
        return lo

    cdef inline void _bucket(self, Py_ssize_t c, double v) noexcept:
        self.counts[c * (self.nb + 1) + self.bucket_of(v)] += 1
        self.count[c] += 1
        if self.record_min_max:
            if v < self.vmin[c]:
                self.vmin[c] = v
            if v > self.vmax[c]:
                self.vmax[c] = v

    cdef void add_i(self, Py_ssize_t c, int64_t v) noexcept:
        cdef int64_t r
        self._touch(c)
        self._bucket(c, <double>v)
        if self.isfloat[c]:
            self.dsum[c] += <double>v
        elif om_add_overflow(self.isum[c], v, &r):
            self.isfloat[c] = 1
            self.dsum[c] = <double>self.isum[c] + <double>v
        else:
            self.isum[c] = r

    cdef void add_d(self, Py_ssize_t c, double v) noexcept:
        self._touch(c)
        self._bucket(c, v)
        self.minmax_float[c] = 1
        if self.isfloat[c]:
            self.dsum[c] += v
        else:
            self.isfloat[c] = 1
            self.dsum[c] = <double>self.isum[c] + v

    cdef void snapshot_cell(self, Py_ssize_t c, char *dst, bint reset) noexcept:
        cdef HistSnap *s = <HistSnap *>dst
        s.count = self.count[c]
        s.isum = self.isum[c]
        s.dsum = self.dsum[c]
        s.vmin = self.vmin[c]
        s.vmax = self.vmax[c]
        s.isfloat = self.isfloat[c]
        s.minmax_float = self.minmax_float[c]
        memcpy(dst + sizeof(HistSnap), self.counts + c * (self.nb + 1), (self.nb + 1) * sizeof(uint64_t))
        if reset:
            self.init_cell(c)

    cdef object make_point(self, char *src, object attributes, object start, object now, list exemplars):
        cdef HistSnap *s = <HistSnap *>src
        cdef uint64_t *counts = <uint64_t *>(src + sizeof(HistSnap))
        cdef HistogramDataPoint p = HistogramDataPoint.__new__(HistogramDataPoint)
        cdef Py_ssize_t j
        p._flat_attributes = attributes
        p.start_time_unix_nano = start
        p.time_unix_nano = now
        p.count = s.count
        p.sum = _number(s.isfloat, s.isum, s.dsum)
        p.bucket_counts = tuple([counts[j] for j in range(self.nb + 1)])
        p.explicit_bounds = self.boundaries
        if self.record_min_max and s.count and not s.minmax_float:
            p.min = <int64_t>s.vmin
            p.max = <int64_t>s.vmax
        else:
            p.min = s.vmin
            p.max = s.vmax
        p.exemplars = exemplars
        return p
