# Base-2 exponential histogram: one cell per series (see expo_histogram.pxi).

from libc.stdint cimport uint64_t, int64_t, uint8_t


cdef struct ExpoSide:
    # One sign's buckets: a circular window of max_size preallocated counters.
    uint64_t *counts   # counts[(i - base) mod max_size] is bucket index i
    int64_t start      # lowest index held (the exported offset)
    int64_t end        # highest index held
    int64_t base       # index stored at counts[0]; always within [start, end]
    int cap            # length of the exported bucket_counts (reference-compatible)
    bint used          # False until the first value lands on this side


cdef class ExpoHistogramCell:
    cdef readonly int max_size
    cdef readonly int max_scale
    cdef readonly bint record_min_max
    cdef readonly int scale                   # current scale of the buckets
    cdef readonly unsigned long long count    # all measurements, zeros included
    cdef readonly unsigned long long zero_count
    cdef ExpoSide pos
    cdef ExpoSide neg
    cdef uint64_t *_block                     # both sides' counters, one allocation
    # sum/min/max keep the Python type the reference exports: int while only
    # integer measurements arrived, float from the first float on.
    cdef int64_t _isum
    cdef double _dsum
    cdef uint8_t _sum_is_float                # values.pxd's sum_add_i/sum_add_d keep the three
    cdef double _min
    cdef double _max
    cdef long long _imin
    cdef long long _imax
    cdef bint _min_is_int
    cdef bint _max_is_int

    cdef void record(self, double value) noexcept
    cdef void record_int(self, long long value) noexcept
    cdef void reset(self) noexcept
    cdef void merge_from(self, ExpoHistogramCell other)
    cdef object to_point(self, object attributes, object start_time_unix_nano,
                         object time_unix_nano, object exemplars)
