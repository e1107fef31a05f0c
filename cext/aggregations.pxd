# The aggregations a stream's cells compute: sum, last value, explicit-bucket
# histogram and base-2 exponential histogram, each a Stream subclass
# (table.pxd) implementing its aggregation hooks. See aggregations.pxi.
#
# Contract: the Python layer (view.py) constructs them as
# Kind(limit, delta, is_async, allowed_keys, excluded_keys, *aggregation options);
# everything else reaches them through the Stream interface.

from libc.math cimport INFINITY
from libc.stdint cimport int64_t, uint32_t, uint64_t, uint8_t, INT64_MAX, INT64_MIN


# Snapshot records (table.pxd's Snapshot), which an encoder (otlp_wire.pxi,
# prometheus_text.pxi) may read before points exist.
ctypedef struct NumSnap:                    # a number cell
    int64_t i
    double d
    uint8_t isfloat

ctypedef union MinMax:                      # a histogram cell's min or max:
    int64_t i                               # exact while every measurement was an int
    double d                                # from the first float on (minmax_float)


ctypedef struct HistSnap:                   # an explicit-bucket histogram cell
    uint64_t count
    int64_t isum
    double dsum
    MinMax vmin                             # int: INT64_MAX / INT64_MIN while nothing is recorded
    MinMax vmax
    uint8_t isfloat
    uint8_t minmax_float
    uint8_t narrow                          # the bucket counts are uint32 (every record of the snapshot)
    # followed by nb + 1 bucket counts: uint32 when narrow, else uint64


cdef inline uint64_t hist_bucket(const HistSnap* s, Py_ssize_t j) noexcept:
    """Bucket ``j``'s count of a histogram record, whatever its width."""
    if s.narrow:
        return (<const uint32_t*>(<const char*>s + sizeof(HistSnap)))[j]
    return (<const uint64_t*>(<const char*>s + sizeof(HistSnap)))[j]


cdef inline bint hist_int_extremes(const HistSnap* s) noexcept:
    """Whether a histogram record's min and max are ints (every measurement was one,
    and they were recorded)."""
    return not s.minmax_float and s.vmin.i <= s.vmax.i


cdef inline double hist_extreme(const HistSnap* s, bint is_min) noexcept:
    """A histogram record's min or max as a double (+inf / -inf when none was recorded)."""
    if s.minmax_float:
        return s.vmin.d if is_min else s.vmax.d
    if s.vmin.i > s.vmax.i:
        return INFINITY if is_min else -INFINITY
    return <double>(s.vmin.i if is_min else s.vmax.i)


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
    cdef uint8_t *minmax_float              # some measurement was float: vmin/vmax hold doubles
    cdef MinMax *vmin
    cdef MinMax *vmax
    cdef bint narrow                        # this collection's records hold uint32 bucket counts
    cdef inline void _bucket(self, Py_ssize_t c, double v) noexcept
    cdef void _float_extremes(self, Py_ssize_t c) noexcept

cdef class ExpoHistogramStream(Stream):
    cdef list act                           # per cell: the ExpoHistogramCell receiving measurements
    cdef list aux                           # per cell: the cumulative total (cumulative) or the spare (delta)
    cdef readonly int max_size
    cdef readonly int max_scale
    cdef readonly bint record_min_max
    cdef inline ExpoHistogramCell _cell(self, Py_ssize_t c)
