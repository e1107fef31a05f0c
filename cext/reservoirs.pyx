"""Exemplar reservoirs in preallocated slots.

One Reservoirs object serves every cell of a stream and is created on the
first sampled measurement (with the default trace-based filter and no sampled
span there is none, and no cost). Two policies, as the specification defines:
- simple fixed size: k slots per cell, uniform reservoir sampling
  ("algorithm R"), the seen-count reset at every collection;
- aligned histogram bucket: one slot per bucket, each replaced with
  probability 1/n among the n measurements its bucket saw in the interval.
Taking the samples out of a cell is allocation-free (the slots are copied and
their attribute references moved), so collection can do it while cells are
being reset.
"""

from cpython.mem cimport PyMem_Realloc, PyMem_Free
from cpython.ref cimport Py_XINCREF, Py_XDECREF
from libc.string cimport memset

from otelmetrics._native.points cimport Exemplar


cdef inline uint64_t _next(uint64_t *s) noexcept nogil:
    # xorshift64*: fast, good enough to pick a slot.
    cdef uint64_t x = s[0]
    x ^= x >> 12
    x ^= x << 25
    x ^= x >> 27
    s[0] = x
    return x * <uint64_t>0x2545F4914F6CDD1DULL


cdef class Reservoirs:
    def __cinit__(self, Py_ssize_t k, bint aligned, Py_ssize_t cap, uint64_t seed=0x9E3779B97F4A7C15ULL):
        if k < 1:
            raise ValueError("a reservoir needs at least one slot")
        self.k = k
        self.aligned = aligned
        self.cap = 0
        self.rng = seed or 1
        self.grow(cap)

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.slots != NULL:
            for i in range(self.cap * self.k):
                Py_XDECREF(self.slots[i].filtered)
        PyMem_Free(self.slots)
        PyMem_Free(self.seen)

    cdef int grow(self, Py_ssize_t newcap) except -1:
        cdef Py_ssize_t nseen_old = self.cap * (self.k if self.aligned else 1)
        cdef Py_ssize_t nseen_new = newcap * (self.k if self.aligned else 1)
        if newcap <= self.cap:
            return 0
        slots = <ExSlot *>PyMem_Realloc(self.slots, <size_t>(newcap * self.k) * sizeof(ExSlot))
        if slots == NULL:
            raise MemoryError()
        self.slots = slots
        memset(self.slots + self.cap * self.k, 0, <size_t>((newcap - self.cap) * self.k) * sizeof(ExSlot))
        seen = <uint32_t *>PyMem_Realloc(self.seen, <size_t>nseen_new * sizeof(uint32_t))
        if seen == NULL:
            raise MemoryError()
        self.seen = seen
        memset(self.seen + nseen_old, 0, <size_t>(nseen_new - nseen_old) * sizeof(uint32_t))
        self.cap = newcap
        return 0

    cdef void offer(self, Py_ssize_t cell, Py_ssize_t bucket, bint isint, int64_t iv, double dv,
                    int64_t t, uint64_t thi, uint64_t tlo, uint64_t span, object filtered) noexcept:
        cdef Py_ssize_t slot
        cdef uint32_t n
        cdef ExSlot *e
        cdef PyObject *old
        if self.aligned:
            slot = bucket if bucket < self.k else self.k - 1
            self.seen[cell * self.k + slot] += 1
            n = self.seen[cell * self.k + slot]
            if n > 1 and _next(&self.rng) % n != 0:
                return
        else:
            n = self.seen[cell]
            self.seen[cell] = n + 1
            if n < self.k:
                slot = n
            else:
                slot = <Py_ssize_t>(_next(&self.rng) % (<uint64_t>n + 1))
                if slot >= self.k:
                    return
        e = &self.slots[cell * self.k + slot]
        old = e.filtered
        e.filtered = NULL if filtered is None else <PyObject *>filtered
        Py_XINCREF(e.filtered)
        e.dvalue = dv
        e.ivalue = iv
        e.isint = isint
        e.time = t
        e.trace_hi = thi
        e.trace_lo = tlo
        e.span_id = span
        e.used = 1
        Py_XDECREF(old)   # a dict of plain values: freeing it runs no Python code

    cdef Py_ssize_t take(self, Py_ssize_t cell, ExSlot *dst) noexcept:
        """Move the cell's samples to ``dst`` (k slots) and empty it; returns how many."""
        cdef Py_ssize_t j, n = 0
        cdef ExSlot *e
        for j in range(self.k):
            e = &self.slots[cell * self.k + j]
            if e.used:
                dst[n] = e[0]          # the reference moves with it
                e.filtered = NULL
                e.used = 0
                n += 1
        self._reset_seen(cell)
        return n

    cdef inline void _reset_seen(self, Py_ssize_t cell) noexcept:
        if self.aligned:
            memset(self.seen + cell * self.k, 0, <size_t>self.k * sizeof(uint32_t))
        else:
            self.seen[cell] = 0

    cdef void clear_cell(self, Py_ssize_t cell) noexcept:
        cdef Py_ssize_t j
        cdef ExSlot *e
        for j in range(self.k):
            e = &self.slots[cell * self.k + j]
            Py_XDECREF(e.filtered)
            e.filtered = NULL
            e.used = 0
        self._reset_seen(cell)


cdef list build_exemplars(ExSlot *src, Py_ssize_t n):
    """Exemplar objects from taken slots; releases the moved references."""
    cdef list out = []
    cdef Py_ssize_t j
    cdef Exemplar ex
    cdef object filtered
    for j in range(n):
        ex = Exemplar.__new__(Exemplar)
        if src[j].filtered != NULL:
            filtered = <object>src[j].filtered
            Py_XDECREF(src[j].filtered)    # `filtered` holds it now
            src[j].filtered = NULL
        else:
            filtered = {}
        ex.filtered_attributes = filtered
        ex.value = src[j].ivalue if src[j].isint else src[j].dvalue
        ex.time_unix_nano = src[j].time
        if src[j].span_id or src[j].trace_hi or src[j].trace_lo:
            ex.trace_id = (<object>src[j].trace_hi << 64) | src[j].trace_lo
            ex.span_id = src[j].span_id
        else:
            ex.trace_id = None
            ex.span_id = None
        out.append(ex)
    return out
