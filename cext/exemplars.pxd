# Exemplars, compiled side: which measurements are sampled (ExemplarSampler),
# where the samples are kept (Reservoirs: preallocated slots per cell), and the
# per-stream glue (StreamExemplars: the reservoir policy of one stream, a
# user's reservoirs, the attributes a view dropped; TakenExemplars: one
# collection's samples). See exemplars.pxi.
#
# Contract with the callers:
# - instruments.pxi asks ExemplarSampler.sample(context, ids) once per measurement
#   (the span's trace id high and low halves and span id land in the caller's ids[3]:
#   one sampler serves every thread)
#   (mode EX_OFF never reaches it: the instrument then holds no sampler),
#   unless the inline unsampled(sampler, context) already says no: with the
#   trace-based filter and no span in the context (the usual case) that
#   answer costs one context read and no function call;
# - table.pxi's Stream owns one StreamExemplars (None: exemplars off), calls
#   offer() for a sampled measurement, grow()/clear_cell() as its table changes,
#   and take() in a collection's Python-free phase, build() after it.
# Nothing here calls back into the table.

from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF
from libc.stdint cimport int64_t, uint64_t, uint32_t, uint8_t

# Exemplar filter modes (exported to Python as ALWAYS_OFF, ALWAYS_ON, TRACE_BASED).
cdef enum:
    EX_OFF = 0
    EX_ON = 1
    EX_TRACE_BASED = 2


cdef extern from "Python.h":
    # Without Cython's error checks: unsampled() handles the errors itself.
    int PyContextVar_Get(PyObject *var, PyObject *default_value, PyObject **value) noexcept
    PyObject *PyDict_GetItemWithError(PyObject *d, PyObject *k) noexcept
    bint PyDict_Check(PyObject *o) noexcept
    Py_ssize_t PyDict_GET_SIZE(PyObject *d) noexcept
    void PyErr_Clear() noexcept
    PyObject *PyErr_Occurred() noexcept


cdef class ExemplarSampler:
    cdef readonly int mode
    cdef object ctxvar          # opentelemetry's current-context ContextVar, or None
    cdef object span_key        # the context key of the current span; None until known
    cdef object get_current     # fallback: opentelemetry.context.get_current
    cdef int sample(self, object context, uint64_t *ids) except -1
    cdef PyObject *key(self) noexcept


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


cdef class StreamExemplars:
    cdef readonly Py_ssize_t k              # reservoir slots per cell (0: a user's reservoirs)
    cdef readonly bint aligned              # one slot per histogram bucket
    cdef Py_ssize_t cap                     # cells of the stream
    cdef Reservoirs res                     # None until the first sample
    cdef Py_ssize_t offered                 # samples offered to ``res`` since the last collection
    cdef object allowed, excluded           # the stream's view key filters
    cdef object factory                     # a user reservoir per series: factory(aggregation type)
    cdef object agg_type
    cdef dict user_reservoirs               # cell -> (attribute key tuple, user reservoir)
    cdef object first_custom                # the instance made while configuring, used first
    cdef bint warned                        # a user reservoir's failure was logged
    cdef int grow(self, Py_ssize_t newcap) except -1
    cdef void clear_cell(self, Py_ssize_t c) noexcept
    cdef int offer(self, Py_ssize_t c, tuple key, Py_ssize_t bucket, bint isint, int64_t iv, double dv,
                   object attributes, int64_t t, uint64_t thi, uint64_t tlo, uint64_t span,
                   object context) except -1
    cdef TakenExemplars begin_collect(self, Py_ssize_t n_cells)
    cdef object _custom_reservoir(self, Py_ssize_t c, tuple key, bint create)
    cdef void _warn(self, Exception e)


cdef class TakenExemplars:
    cdef StreamExemplars owner
    cdef Py_ssize_t k                       # slots per exported point
    cdef ExSlot *slots                      # n_cells * k, moved out of the reservoirs
    cdef Py_ssize_t *n                      # samples per exported point
    cdef Py_ssize_t *cells                  # cell per exported point (a user's reservoirs)
    cdef Py_ssize_t count                   # points taken so far
    cdef void take(self, Py_ssize_t i, Py_ssize_t c) noexcept
    cdef list build(self, Py_ssize_t i, tuple flat)


cdef inline bint _no_span_in(ExemplarSampler s, PyObject *context) noexcept:
    # A non-empty context: look the span up (a key's __eq__ raising: let sample() decide).
    cdef PyObject *key = <PyObject *>s.span_key
    if key == <PyObject *>None:
        key = s.key()
        if key == NULL:
            return True
    if PyDict_GetItemWithError(context, key) != NULL:
        return False
    if PyErr_Occurred():
        PyErr_Clear()
        return False
    return True


cdef inline bint _no_span(ExemplarSampler s, PyObject *context) noexcept:
    # True when the context (an opentelemetry Context, a dict) holds no span;
    # not a dict: sample() treats it as holding none.
    return not PyDict_Check(context) or PyDict_GET_SIZE(context) == 0 or _no_span_in(s, context)


cdef inline bint unsampled(ExemplarSampler s, object context) noexcept:
    """True when sample(context) would surely say no, found without calling
    Python code: the trace-based filter and no span in the context (the given
    one, else the current one). False: ask sample()."""
    cdef PyObject *raw = NULL
    cdef bint r
    if s.mode != EX_TRACE_BASED:
        return False
    if context is not None:
        return _no_span(s, <PyObject *>context)
    if s.ctxvar is None:
        return False
    if PyContextVar_Get(<PyObject *>s.ctxvar, NULL, &raw) < 0:
        PyErr_Clear()
        return False
    if raw == NULL:
        return True
    r = _no_span(s, raw)
    Py_XDECREF(raw)
    return r
