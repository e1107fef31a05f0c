# Metric streams: the bounded table from attribute set to cell, and the
# aggregations that live in those cells. See streams.pyx.

from libc.stdint cimport int64_t, uint64_t, uint32_t, uint8_t, int32_t

from otelmetrics._native.reservoirs cimport Reservoirs, ExSlot

cdef extern from "Python.h":
    ctypedef long Py_hash_t

cdef int64_t now_ns() noexcept nogil

# Cell lookup results besides a cell index.
cdef enum:
    NEEDS_SANITIZE = -2
    OVERFLOW_CELL = 0

cdef class Stream:
    cdef readonly Py_ssize_t limit
    cdef readonly bint delta
    cdef readonly bint is_async
    cdef readonly uint64_t overflowed      # measurements that went to the overflow cell
    cdef readonly int64_t created_ns
    cdef int64_t last_collect_ns
    cdef Py_ssize_t cap, n_used, n_live
    cdef list keys                          # attribute dict per cell; None = free
    cdef Py_hash_t *hashes
    cdef uint8_t *flags                     # CELL_* bits
    cdef uint32_t *pins                     # bound handles holding the cell
    cdef int64_t *starts                    # start time per cell
    cdef int32_t *index                     # open addressing: cell index or -1
    cdef Py_ssize_t index_size
    cdef Py_ssize_t *free_cells
    cdef Py_ssize_t n_free
    cdef object allowed, excluded           # view key filters (frozenset or None)
    cdef Py_ssize_t snap_size               # bytes of one cell's snapshot record
    cdef bint reclaim_tried                 # delta: table scanned for quiet cells this interval
    cdef Reservoirs ex                      # exemplar samples; None until the first one
    cdef readonly Py_ssize_t ex_k           # reservoir slots per cell (0: exemplars off)
    cdef bint ex_aligned
    cdef object ex_factory                  # a user reservoir per series: factory(aggregation type)
    cdef object ex_agg_type
    cdef dict ex_custom                     # cell -> (attribute key tuple, user reservoir)
    cdef object _first_custom               # the instance made while configuring, used first
    cdef bint ex_warned                     # a user reservoir's failure was logged
    cdef Py_ssize_t _reclaim(self) except -1
    cdef inline Py_ssize_t _overflow(self) noexcept
    cdef void _free_cell(self, Py_ssize_t c) noexcept

    cdef Py_ssize_t cell_for(self, object attributes, bint clean) except -3
    cdef Py_ssize_t _insert(self, Py_hash_t h, dict d, Py_ssize_t n) except -3
    cdef inline Py_ssize_t _find(self, Py_hash_t h, dict d, Py_ssize_t n) except -3
    cdef int _grow(self, Py_ssize_t newcap) except -1
    cdef int _rebuild_index(self, Py_ssize_t size) except -1
    cdef inline void _touch(self, Py_ssize_t c) noexcept
    # Aggregation hooks, implemented by subclasses.
    cdef int grow_cells(self, Py_ssize_t newcap) except -1
    cdef void init_cell(self, Py_ssize_t c) noexcept
    cdef object new_cell_objects(self)
    cdef void adopt_cell(self, Py_ssize_t c, object pending) noexcept
    cdef void add_i(self, Py_ssize_t c, int64_t v) noexcept
    cdef void add_d(self, Py_ssize_t c, double v) noexcept
    cdef bint exportable(self, Py_ssize_t c) noexcept
    cdef void snapshot_cell(self, Py_ssize_t c, char *dst, bint reset) noexcept
    cdef object make_point(self, char *src, object attributes, object start, object now, list exemplars)
    cpdef list collect(self, int64_t now)
    cdef Py_ssize_t bucket_of(self, double v) noexcept
    cdef int offer(self, Py_ssize_t c, bint isint, int64_t iv, double dv, object attributes,
                   int64_t t, uint64_t thi, uint64_t tlo, uint64_t span, object context) except -1
    cdef object _custom_reservoir(self, Py_ssize_t c, bint create)

cdef class NumberStream(Stream):
    cdef int64_t *ival
    cdef double *dval
    cdef uint8_t *isfloat
    cdef bint gauge_points                  # points without a start time

cdef class SumStream(NumberStream):
    cdef int64_t *prev_i                    # async + delta: last observed value
    cdef double *prev_d
    cdef uint8_t *prev_float

cdef class LastValueStream(NumberStream):
    pass

cdef class HistogramStream(Stream):
    cdef readonly tuple boundaries
    cdef double *bounds
    cdef Py_ssize_t nb                      # number of boundaries; nb + 1 buckets
    cdef bint record_min_max
    cdef uint64_t *counts                   # (nb + 1) per cell
    cdef uint64_t *count
    cdef int64_t *isum
    cdef double *dsum
    cdef uint8_t *isfloat                   # sum became float
    cdef uint8_t *minmax_float              # some measurement was float
    cdef double *vmin
    cdef double *vmax
    cdef inline void _bucket(self, Py_ssize_t c, double v) noexcept
