# Included by _native.pyx: one extension module, otelmetrics._native, whose header states the directives.
"""Exemplars, compiled side: sampling, reservoirs, and a stream's exemplar state.

ExemplarSampler decides per measurement whether it may become an exemplar and
with which span (the filter modes are exported as ALWAYS_OFF, ALWAYS_ON and
TRACE_BASED, the values the Python layer's filters carry). Trace-based with no
span in the context costs one context-variable read and a dict size check.
The span's context key is opentelemetry.trace's, taken from that module once the
application has imported it: until then no code can have put a span in a context,
and the SDK does not import it for the application (opentelemetry.trace and
typing_extensions are 0.9 MB resident and 22 M instructions to import, more than
``import otelmetrics``; with typing_extensions < 4.16 they import asyncio and ssl too).

Reservoirs keeps the samples in preallocated slots. One Reservoirs object
serves every cell of a stream and is created on the first sampled measurement
(with the default trace-based filter and no sampled span there is none, and no
cost). Two policies, as the specification defines:
- simple fixed size: k slots per cell, uniform reservoir sampling
  ("algorithm R"), the seen-count reset at every collection;
- aligned histogram bucket: one slot per bucket, each replaced with
  probability 1/n among the n measurements its bucket saw in the interval.

StreamExemplars is one stream's exemplar state: its Reservoirs, or the user's
reservoir objects (one per series, made by the view's factory), and the view's
attribute filters (an exemplar keeps the attributes the view dropped).
TakenExemplars carries one collection's samples: taking them out of a cell is
allocation-free and runs no Python code (the slots are copied and their
attribute references moved), so a collection does it while it resets cells;
the Exemplar objects are built afterwards.

A user reservoir's failure is logged once per stream and its exemplars are
skipped; nothing here raises into a measurement.
"""

import logging

from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.ref cimport Py_XINCREF, Py_XDECREF
from libc.string cimport memset


cdef extern from "Python.h":
    PyObject *PyDict_GetItem(object d, object k)
    PyObject *PyImport_GetModuleDict() noexcept

cdef str _SPAN_MODULE = "opentelemetry.trace.propagation"

_logger = logging.getLogger("otelmetrics")

# The filter modes, for the Python layer's ExemplarFilter classes.
ALWAYS_OFF = EX_OFF
ALWAYS_ON = EX_ON
TRACE_BASED = EX_TRACE_BASED


cdef class ExemplarSampler:
    # Decides, per measurement, whether it may become an exemplar and with
    # which span.

    def __cinit__(self, int mode, ctxvar, get_current):
        self.mode = mode
        self.ctxvar = ctxvar
        self.get_current = get_current
        self.key()

    cdef PyObject *key(self) noexcept:
        """The current span's context key (borrowed), or NULL while
        opentelemetry.trace.propagation has not been imported (or is still being
        imported): there is no span in any context then. Found once, kept."""
        cdef PyObject *module
        if self.span_key is not None:
            return <PyObject *>self.span_key
        module = PyDict_GetItemWithError(PyImport_GetModuleDict(), <PyObject *>_SPAN_MODULE)
        if module == NULL:
            PyErr_Clear()
            return NULL
        try:
            key = getattr(<object>module, "_SPAN_KEY", None)
        except Exception:
            return NULL
        if key is None:
            return NULL
        with cython.critical_section(self):
            if self.span_key is None:
                self.span_key = key
            return <PyObject *>self.span_key

    cdef int sample(self, object context, uint64_t *ids) except -1:
        """1 when the measurement is eligible; the trace id's high and low halves and
        the span id in ids[0..2] (the caller's: a sampler is shared by every thread)."""
        cdef PyObject *raw = NULL
        cdef PyObject *span
        cdef PyObject *key
        ids[0] = ids[1] = ids[2] = 0
        if self.mode == EX_OFF:
            return 0
        if context is None:
            if self.ctxvar is not None:
                if PyContextVar_Get(<PyObject *>self.ctxvar, NULL, &raw) < 0:
                    return -1
                if raw == NULL:
                    return self.mode == EX_ON
                context = <object>raw
                Py_XDECREF(raw)
            else:
                context = self.get_current()
        if type(context) is not dict and not isinstance(context, dict):
            return self.mode == EX_ON
        if PyDict_GET_SIZE(<PyObject *>context) == 0:
            return self.mode == EX_ON
        key = self.key()
        if key == NULL:
            return self.mode == EX_ON
        span = PyDict_GetItem(context, <object>key)
        if span == NULL:
            return self.mode == EX_ON
        try:
            sc = (<object>span).get_span_context()
            if not sc.is_valid:
                return self.mode == EX_ON
            sampled = sc.trace_flags.sampled
            ids[0] = (sc.trace_id >> 64) & 0xFFFFFFFFFFFFFFFF
            ids[1] = sc.trace_id & 0xFFFFFFFFFFFFFFFF
            ids[2] = sc.span_id
        except Exception:
            return self.mode == EX_ON
        return 1 if (self.mode == EX_ON or sampled) else 0


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


cdef list _build_exemplars(ExSlot *src, Py_ssize_t n):
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


cdef class StreamExemplars:
    # One stream's exemplars: ``k`` reservoir slots per cell (``aligned``:
    # one per histogram bucket), or, when made by ``custom()``, a user reservoir
    # per series.

    def __cinit__(self, Py_ssize_t k, bint aligned, Py_ssize_t cap, allowed, excluded):
        self.k = k
        self.aligned = aligned
        self.cap = cap
        self.allowed = allowed
        self.excluded = excluded

    @staticmethod
    def custom(factory, aggregation_type, first, Py_ssize_t cap, allowed, excluded):
        # A user reservoir (``offer(value, time_unix_nano, attributes, context)``,
        # ``collect(point_attributes)``) per series, made by ``factory(aggregation_type)``;
        # ``first`` (made while configuring) serves the first series.
        cdef StreamExemplars ex = StreamExemplars(0, False, cap, allowed, excluded)
        ex.factory = factory
        ex.agg_type = aggregation_type
        ex.user_reservoirs = {}
        ex.first_custom = first
        return ex

    cdef int grow(self, Py_ssize_t newcap) except -1:
        self.cap = newcap
        if self.res is not None:
            self.res.grow(newcap)
        return 0

    cdef void clear_cell(self, Py_ssize_t c) noexcept:
        if self.res is not None:
            self.res.clear_cell(c)

    cdef void _warn(self, Exception e):
        if not self.warned:         # once per stream
            self.warned = True
            _logger.warning("custom exemplar reservoir failed (%s: %s); its exemplars are skipped",
                            type(e).__name__, e)

    cdef object _custom_reservoir(self, Py_ssize_t c, tuple key, bint create):
        entry = self.user_reservoirs.get(c)
        if entry is not None and entry[0] is key:
            return entry[1]
        if not create:
            return None
        reservoir, self.first_custom = self.first_custom, None
        if reservoir is None:
            reservoir = self.factory(self.agg_type)
        self.user_reservoirs[c] = (key, reservoir)     # a reused cell gets a fresh reservoir
        return reservoir

    cdef int offer(self, Py_ssize_t c, tuple key, Py_ssize_t bucket, bint isint, int64_t iv, double dv,
                   object attributes, int64_t t, uint64_t thi, uint64_t tlo, uint64_t span,
                   object context) except -1:
        """Offer a sampled measurement of cell ``c`` (series ``key``, histogram
        ``bucket`` when aligned); ``attributes`` is the full (sanitised or plain)
        set, of which the view-dropped part is kept."""
        cdef dict filtered = None
        if self.factory is not None:
            try:
                self._custom_reservoir(c, key, True).offer(iv if isint else dv, t, attributes or {}, context)
            except Exception as e:
                self._warn(e)
            return 0
        if self.k == 0:
            return 0
        if self.res is None:
            # Seeded per stream and moment, so that separate reservoirs don't pick alike.
            self.res = Reservoirs(self.k, self.aligned, self.cap,
                                  <uint64_t>now_ns() ^ (<uint64_t><size_t><void *>self * <uint64_t>0x9E3779B97F4A7C15ULL))
        if (self.allowed is not None or self.excluded is not None) and type(attributes) is dict:
            filtered = {k: v for k, v in (<dict>attributes).items()
                        if not ((self.allowed is None or k in self.allowed)
                                and (self.excluded is None or k not in self.excluded))}
        self.res.offer(c, bucket, isint, iv, dv, t, thi, tlo, span, filtered)
        self.offered += 1
        return 0

    cdef TakenExemplars begin_collect(self, Py_ssize_t n_cells):
        """Room for the samples of up to ``n_cells`` points, or None when there is nothing to
        take: no sample offered since the last collection took them all (each take empties
        its cell), so this collection's snapshot stays readable by the byte writers. A user's
        reservoirs are always asked."""
        cdef TakenExemplars taken
        if self.factory is None and (self.res is None or self.offered == 0):
            return None
        self.offered = 0
        taken = TakenExemplars.__new__(TakenExemplars)
        taken.owner = self
        if self.res is not None:
            taken.k = self.k
            taken.slots = <ExSlot *>PyMem_Malloc(<size_t>(n_cells * self.k) * sizeof(ExSlot) + 1)
            taken.n = <Py_ssize_t *>PyMem_Malloc(<size_t>n_cells * sizeof(Py_ssize_t) + 1)
            if taken.slots == NULL or taken.n == NULL:
                raise MemoryError()
        else:
            taken.cells = <Py_ssize_t *>PyMem_Malloc(<size_t>n_cells * sizeof(Py_ssize_t) + 1)
            if taken.cells == NULL:
                raise MemoryError()
        return taken


cdef class TakenExemplars:
    # The exemplars of one collection: ``take`` in its Python-free phase
    # (point ``i`` from cell ``c``), ``build`` afterwards.

    def __dealloc__(self):
        cdef Py_ssize_t i, j
        if self.slots != NULL:
            # References not handed to Exemplar objects (only after an error).
            for i in range(self.count):
                for j in range(self.n[i]):
                    Py_XDECREF(self.slots[i * self.k + j].filtered)
                    self.slots[i * self.k + j].filtered = NULL
        PyMem_Free(self.slots)
        PyMem_Free(self.n)
        PyMem_Free(self.cells)

    cdef void take(self, Py_ssize_t i, Py_ssize_t c) noexcept:
        if self.slots != NULL:
            self.n[i] = self.owner.res.take(c, self.slots + i * self.k)
        else:
            self.cells[i] = c
        self.count = i + 1

    cdef list build(self, Py_ssize_t i, tuple flat):
        """Exemplar objects of point ``i``, whose series is ``flat`` (k0, v0, k1, v1, ...)."""
        cdef Py_ssize_t j
        cdef list out
        if self.slots != NULL:
            out = _build_exemplars(self.slots + i * self.k, self.n[i])
            self.n[i] = 0
            return out
        reservoir = self.owner._custom_reservoir(self.cells[i], flat, False)
        if reservoir is None:
            return []
        try:
            return list(reservoir.collect({flat[j]: flat[j + 1] for j in range(0, len(flat), 2)}) or ())
        except Exception as e:
            self.owner._warn(e)
            return []
