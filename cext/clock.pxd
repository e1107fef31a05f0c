# The clock of every timestamp the compiled core takes: wall-clock nanoseconds
# (CLOCK_REALTIME, as OTLP's time_unix_nano wants). Inline, so reading it from
# any source is a clock_gettime call and no function call of ours.
# Python reads the same clock as otelmetrics._native.time_ns().

from libc.stdint cimport int64_t

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    int CLOCK_REALTIME


cdef inline int64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec
