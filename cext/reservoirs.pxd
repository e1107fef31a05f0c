# Exemplar reservoirs: preallocated sample slots per cell of a stream.

from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint64_t, uint32_t, uint8_t

ctypedef struct ExSlot:
    double dvalue
    int64_t ivalue
    int64_t time
    uint64_t trace_hi
    uint64_t trace_lo
    uint64_t span_id
    PyObject *filtered          # owned reference to a dict, or NULL
    uint8_t used
    uint8_t isint

cdef class Reservoirs:
    cdef readonly Py_ssize_t k   # slots per cell
    cdef readonly bint aligned   # slot = histogram bucket (one per bucket)
    cdef Py_ssize_t cap
    cdef ExSlot *slots           # cap * k
    cdef uint32_t *seen          # measurements offered: per cell (simple) or per slot (aligned)
    cdef uint64_t rng
    cdef int grow(self, Py_ssize_t newcap) except -1
    cdef void offer(self, Py_ssize_t cell, Py_ssize_t bucket, bint isint, int64_t iv, double dv,
                    int64_t t, uint64_t thi, uint64_t tlo, uint64_t span, object filtered) noexcept
    cdef Py_ssize_t take(self, Py_ssize_t cell, ExSlot *dst) noexcept
    cdef void clear_cell(self, Py_ssize_t cell) noexcept
    cdef inline void _reset_seen(self, Py_ssize_t cell) noexcept

cdef list build_exemplars(ExSlot *src, Py_ssize_t n)
