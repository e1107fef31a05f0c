# Included by _native.pyx: one extension module, otelmetrics._native, whose header states the directives.
"""The aggregations computed in a stream's cells: sum, last value,
explicit-bucket histogram and base-2 exponential histogram.

Each is a Stream (table.pxi) that adds per-cell storage, grown with the table,
and implements the hooks: add_i/add_d record an int64 or a double into a cell
without allocating or calling Python code; snapshot_cell copies (and, for
delta or asynchronous streams, resets) a cell in a collection's Python-free
phase; make_point builds the point object from that copy afterwards.

Numbers keep the type the reference SDK exports: a sum is an int64 while every
measurement is an int and turns double from the first float, or when it would
overflow int64 (never wrapping); points carry ints or floats accordingly.
"""

from cpython.list cimport PyList_GET_ITEM
from cpython.mem cimport PyMem_Free
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.math cimport INFINITY
from libc.string cimport memset, memcpy


cdef inline object _number(bint isfloat, int64_t i, double d):
    return d if isfloat else i


cdef class NumberStream(Stream):
    # A number per series: int64 while every measurement is an int (exported
    # as an int, as_int over OTLP), double from the first float on.

    def __init__(self, Py_ssize_t limit=2000, bint delta=False, bint is_async=False,
                 object allowed_keys=None, object excluded_keys=None):
        self.snap_size = sizeof(NumSnap)
        self._init_storage()

    def __dealloc__(self):
        PyMem_Free(self.ival)
        PyMem_Free(self.dval)
        PyMem_Free(self.isfloat)

    cdef int grow_cells(self, Py_ssize_t newcap) except -1:
        self.ival = <int64_t *>grow_array(self.ival, newcap, sizeof(int64_t))
        self.dval = <double *>grow_array(self.dval, newcap, sizeof(double))
        self.isfloat = <uint8_t *>grow_array(self.isfloat, newcap, sizeof(uint8_t))
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
    # Sum of measurements. An int64 overflow switches the cell to double
    # rather than wrapping. Asynchronous streams receive each callback's
    # cumulative observation; several observations of one series in a
    # collection add up (as in the reference SDK).

    def __dealloc__(self):
        PyMem_Free(self.prev_i)
        PyMem_Free(self.prev_d)
        PyMem_Free(self.prev_float)

    cdef int grow_cells(self, Py_ssize_t newcap) except -1:
        NumberStream.grow_cells(self, newcap)
        if self.is_async and self.delta:
            self.prev_i = <int64_t *>grow_array(self.prev_i, newcap, sizeof(int64_t))
            self.prev_d = <double *>grow_array(self.prev_d, newcap, sizeof(double))
            self.prev_float = <uint8_t *>grow_array(self.prev_float, newcap, sizeof(uint8_t))
        return 0

    cdef void init_cell(self, Py_ssize_t c) noexcept:
        NumberStream.init_cell(self, c)
        if self.prev_i != NULL:
            self.prev_i[c] = 0
            self.prev_d[c] = 0.0
            self.prev_float[c] = 0

    cdef void add_i(self, Py_ssize_t c, int64_t v) noexcept:
        touch(self, c)
        sum_add_i(&self.ival[c], &self.dval[c], &self.isfloat[c], v)

    cdef void add_d(self, Py_ssize_t c, double v) noexcept:
        touch(self, c)
        sum_add_d(&self.ival[c], &self.dval[c], &self.isfloat[c], v)

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
    # Last value (gauges). Points carry no start time, as in the reference SDK.
    # A synchronous cumulative stream keeps exporting each series' last value;
    # otherwise a series is exported only when it got a value in the interval.

    def __cinit__(self, *args, **kwargs):
        self.gauge_points = True

    cdef void add_i(self, Py_ssize_t c, int64_t v) noexcept:
        touch(self, c)
        self.ival[c] = v
        self.isfloat[c] = 0

    cdef void add_d(self, Py_ssize_t c, double v) noexcept:
        touch(self, c)
        self.dval[c] = v
        self.isfloat[c] = 1


# A histogram's snapshot records hold uint32 bucket counts when every exported cell's
# count fits (almost always: a series needs 2**32 measurements to outgrow it), halving the
# buckets' part of a held collection. Lowered by tests (narrow_bucket_limit) to take the
# uint64 records too.
cdef uint64_t _narrow_max = 0xFFFFFFFF


def narrow_bucket_limit(uint64_t limit):
    # Tests: the largest count a uint32 snapshot record may hold (0: none); returns the
    # previous one.
    global _narrow_max
    cdef uint64_t old = _narrow_max
    _narrow_max = limit
    return old


cdef class HistogramStream(Stream):
    # Explicit-bucket histogram: bucket i counts values in (b[i-1], b[i]],
    # the last one (b[-1], +inf). Sum, count, min and max alongside.

    def __init__(self, Py_ssize_t limit=2000, bint delta=False, bint is_async=False,
                 object allowed_keys=None, object excluded_keys=None,
                 boundaries=(), bint record_min_max=True):
        cdef Py_ssize_t j
        self.boundaries = tuple([float(b) for b in boundaries])
        self.nb = len(self.boundaries)
        self.bounds = <double *>grow_array(NULL, self.nb, sizeof(double))
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
        self.counts = <uint64_t *>grow_array(self.counts, newcap * (self.nb + 1), sizeof(uint64_t))
        self.count = <uint64_t *>grow_array(self.count, newcap, sizeof(uint64_t))
        self.isum = <int64_t *>grow_array(self.isum, newcap, sizeof(int64_t))
        self.dsum = <double *>grow_array(self.dsum, newcap, sizeof(double))
        self.isfloat = <uint8_t *>grow_array(self.isfloat, newcap, sizeof(uint8_t))
        self.minmax_float = <uint8_t *>grow_array(self.minmax_float, newcap, sizeof(uint8_t))
        self.vmin = <MinMax *>grow_array(self.vmin, newcap, sizeof(MinMax))
        self.vmax = <MinMax *>grow_array(self.vmax, newcap, sizeof(MinMax))
        return 0

    cdef void init_cell(self, Py_ssize_t c) noexcept:
        memset(self.counts + c * (self.nb + 1), 0, (self.nb + 1) * sizeof(uint64_t))
        self.count[c] = 0
        self.isum[c] = 0
        self.dsum[c] = 0.0
        self.isfloat[c] = 0
        self.minmax_float[c] = 0
        self.vmin[c].i = INT64_MAX
        self.vmax[c].i = INT64_MIN

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
        """Count ``v``; min and max too once they are doubles."""
        self.counts[c * (self.nb + 1) + self.bucket_of(v)] += 1
        self.count[c] += 1
        if self.record_min_max and self.minmax_float[c]:
            if v < self.vmin[c].d:
                self.vmin[c].d = v
            if v > self.vmax[c].d:
                self.vmax[c].d = v

    cdef void _float_extremes(self, Py_ssize_t c) noexcept:
        """The first float of cell ``c``: its min and max are doubles from now on."""
        if self.vmin[c].i <= self.vmax[c].i:
            self.vmin[c].d = <double>self.vmin[c].i
            self.vmax[c].d = <double>self.vmax[c].i
        else:
            self.vmin[c].d = INFINITY
            self.vmax[c].d = -INFINITY
        self.minmax_float[c] = 1

    cdef void add_i(self, Py_ssize_t c, int64_t v) noexcept:
        touch(self, c)
        self._bucket(c, <double>v)
        if self.record_min_max and not self.minmax_float[c]:
            # exact, as the reference's Python ints (a double is not past 2**53)
            if v < self.vmin[c].i:
                self.vmin[c].i = v
            if v > self.vmax[c].i:
                self.vmax[c].i = v
        sum_add_i(&self.isum[c], &self.dsum[c], &self.isfloat[c], v)

    cdef void add_d(self, Py_ssize_t c, double v) noexcept:
        touch(self, c)
        if not self.minmax_float[c]:
            self._float_extremes(c)
        self._bucket(c, v)
        sum_add_d(&self.isum[c], &self.dsum[c], &self.isfloat[c], v)

    cdef Py_ssize_t snapshot_record_size(self) noexcept:
        """uint32 bucket counts when every cell's count fits (buckets never exceed
        it); measured inside the section, so no count moves before the copy. The size
        stays a multiple of 8: the next record's int64 and doubles stay aligned (32-bit
        ARM's LDRD and VLDR need it)."""
        cdef Py_ssize_t c
        self.narrow = True
        for c in range(self.n_used):
            if self.count[c] > _narrow_max:
                self.narrow = False
                break
        if not self.narrow:
            return sizeof(HistSnap) + (self.nb + 1) * sizeof(uint64_t)
        return sizeof(HistSnap) + (((self.nb + 1) * sizeof(uint32_t) + 7) & ~(<Py_ssize_t>7))

    cdef void snapshot_cell(self, Py_ssize_t c, char *dst, bint reset) noexcept:
        cdef HistSnap *s = <HistSnap *>dst
        cdef uint32_t *narrow = <uint32_t *>(dst + sizeof(HistSnap))
        cdef uint64_t *counts = self.counts + c * (self.nb + 1)
        cdef Py_ssize_t j
        s.count = self.count[c]
        s.isum = self.isum[c]
        s.dsum = self.dsum[c]
        s.vmin = self.vmin[c]
        s.vmax = self.vmax[c]
        s.isfloat = self.isfloat[c]
        s.minmax_float = self.minmax_float[c]
        s.narrow = self.narrow
        if self.narrow:
            for j in range(self.nb + 1):
                narrow[j] = <uint32_t>counts[j]
        else:
            memcpy(dst + sizeof(HistSnap), counts, (self.nb + 1) * sizeof(uint64_t))
        if reset:
            self.init_cell(c)

    cdef object make_point(self, char *src, object attributes, object start, object now, list exemplars):
        cdef HistSnap *s = <HistSnap *>src
        cdef HistogramDataPoint p = HistogramDataPoint.__new__(HistogramDataPoint)
        cdef Py_ssize_t j
        p._flat_attributes = attributes
        p.start_time_unix_nano = start
        p.time_unix_nano = now
        p.count = s.count
        p.sum = _number(s.isfloat, s.isum, s.dsum)
        p.bucket_counts = tuple([hist_bucket(s, j) for j in range(self.nb + 1)])
        p.explicit_bounds = self.boundaries
        if hist_int_extremes(s):
            p.min = s.vmin.i
            p.max = s.vmax.i
        else:
            p.min = hist_extreme(s, True)
            p.max = hist_extreme(s, False)
        p.exemplars = exemplars
        return p


ctypedef struct ExpoSnap:
    PyObject *cell      # owned reference to the cell holding the interval's data


cdef class ExpoHistogramStream(Stream):
    # Base-2 exponential histogram. Each series owns two ExpoHistogramCell
    # objects (expo_histogram.pxi), created when the series appears: ``act``
    # receives measurements; ``aux`` is the running cumulative histogram
    # (cumulative temporality: each collection merges ``act`` into it and resets
    # ``act``, which reproduces the reference SDK's numbers exactly, float sums
    # included) or the spare that ``act`` is swapped with (delta). Both moves are
    # C calls with no Python code, so a collection splits the measurements of
    # concurrent threads cleanly between intervals.

    def __init__(self, Py_ssize_t limit=2000, bint delta=False, bint is_async=False,
                 object allowed_keys=None, object excluded_keys=None,
                 int max_size=160, int max_scale=20, bint record_min_max=True):
        ExpoHistogramCell(max_size, max_scale, record_min_max)   # validates the parameters
        self.max_size = max_size
        self.max_scale = max_scale
        self.record_min_max = record_min_max
        self.act = []
        self.aux = []
        self.snap_size = sizeof(ExpoSnap)
        self._init_storage()
        # The overflow cell (0) exists from the start.
        self.adopt_cell(0, self.new_cell_objects())

    cdef int grow_cells(self, Py_ssize_t newcap) except -1:
        while len(self.act) < newcap:
            self.act.append(None)
            self.aux.append(None)
        return 0

    cdef object new_cell_objects(self):
        return (ExpoHistogramCell(self.max_size, self.max_scale, self.record_min_max),
                ExpoHistogramCell(self.max_size, self.max_scale, self.record_min_max))

    cdef void adopt_cell(self, Py_ssize_t c, object pending) noexcept:
        # Swapping list items: reference counting only, no allocation.
        self.act[c] = (<tuple>pending)[0]
        self.aux[c] = (<tuple>pending)[1]

    cdef inline ExpoHistogramCell _cell(self, Py_ssize_t c):
        return <ExpoHistogramCell>PyList_GET_ITEM(self.act, c)

    cdef void add_i(self, Py_ssize_t c, int64_t v) noexcept:
        touch(self, c)
        self._cell(c).record_int(v)

    cdef void add_d(self, Py_ssize_t c, double v) noexcept:
        touch(self, c)
        self._cell(c).record(v)

    cdef void snapshot_cell(self, Py_ssize_t c, char *dst, bint reset) noexcept:
        cdef ExpoSnap *s = <ExpoSnap *>dst
        cdef object act = <object>PyList_GET_ITEM(self.act, c)
        cdef object aux = <object>PyList_GET_ITEM(self.aux, c)
        if self.delta:
            # The spare (emptied after the previous collection) takes over.
            self.act[c] = aux
            self.aux[c] = act
            s.cell = <PyObject *>act
        else:
            (<ExpoHistogramCell>aux).merge_from(<ExpoHistogramCell>act)
            (<ExpoHistogramCell>act).reset()
            s.cell = <PyObject *>aux
        Py_INCREF(<object>s.cell)

    cdef object make_point(self, char *src, object attributes, object start, object now, list exemplars):
        cdef ExpoSnap *s = <ExpoSnap *>src
        cdef ExpoHistogramCell cell = <ExpoHistogramCell>s.cell
        Py_XDECREF(s.cell)        # `cell` holds it now
        s.cell = NULL
        point = cell.to_point(attributes, start, now, exemplars)
        if self.delta:
            cell.reset()          # it becomes the spare for the next interval
        return point

    cdef bint stable_snapshot(self) noexcept:
        # A record refers to a cell the stream goes on using (delta: the next
        # interval's spare; cumulative: the running total): build the points at once.
        return False
