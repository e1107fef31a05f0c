# Included by _native.pyx: one extension module, otelmetrics._native, whose header states the directives.
"""The instrument cores, the recording entry points: one C call per measurement.

An instrument core turns the amount into an int64 or a double (values.pxd),
finds the series' cell in each of its streams (table.pxi), updates it, and
offers the measurement as an exemplar when its sampler says so
(exemplars.pxi). What is dropped (and why) is reported to a Python callable
supplied by the Python layer, which counts and rate-limits the warnings;
nothing here raises into the caller. A well-formed measurement of a known
series runs no Python code; see cext/README.md ("The seam") for the few
exceptions (drops, unusual attribute sets, exemplars).

Every recording method first tries the fast path, inline in one C function:
an exact int or finite float, exemplars surely not sampled (exemplars.pxd's
unsampled), and a series every stream already holds (table.pxd's find_cell),
then one add per stream. It changes nothing until it records, so when any
condition fails the full path (_measure, _apply) runs from the start: value
checks and drop reports, sanitising, new series, exemplars, errors.

Threads: a core's streams (and its bound handles' pinned cells) are read and
updated only inside the core's critical section (cython.critical_section: a
per-object lock on free-threaded CPython, nothing with the GIL), which the
streams' collections take too (table.pxd's guard()). The known-series path
takes it once for all its streams, so a measurement lands in every stream of a
collection interval or in none, and after _deactivate() returns none lands.
Sampling and value parsing happen before it; the span ids a sampler finds go to
the caller's locals. The caller's attribute dict is read in its own critical
section, taken with the core's (the known-series path), or copied first (the full
path, on free-threaded CPython), so that another thread changing it cannot free a
value being compared.
"""

cimport cython
from cpython.tuple cimport PyTuple_GET_SIZE, PyTuple_GET_ITEM
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.dict cimport PyDict_CheckExact, PyDict_Copy
from cpython.object cimport PyObject
from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint64_t


# Drop reasons, as reported to the Python layer.
BAD_VALUE = "dropped: non-numeric value"
NON_FINITE = "dropped: NaN or infinite value"
NEGATIVE = "dropped: negative value on a monotonic instrument"
BAD_ATTRIBUTES = "kept without its invalid attributes (non-str keys, None, nested or mixed values)"
INTERNAL = "dropped: internal error"

# Streams the fast path serves (one per reader and matching view); more take the full path.
cdef enum:
    FAST_STREAMS = 8


cdef object _clean_attributes(object attributes, object report):
    clean, dropped = sanitize(attributes)
    if dropped:
        report(BAD_ATTRIBUTES)
    return clean


cdef inline int _record(tuple streams, int k, int64_t iv, double dv, object attributes,
                        object context, object report, ExemplarSampler sampler,
                        SyncCore core=None) except -1:
    """Add a parsed value to its series in every stream (sanitising the
    attributes once, only if the fast path refuses them) and offer it as an
    exemplar if the sampler says so. Each stream in its guard's critical section
    (``core``'s for a synchronous instrument, which must still be active there)."""
    cdef Py_ssize_t i, c
    cdef Stream s
    cdef bint clean = False
    cdef int sampled = 0
    cdef int64_t t = 0
    cdef uint64_t ids[3]
    if OM_FREE_THREADED and PyDict_CheckExact(attributes):
        attributes = PyDict_Copy(attributes)   # a consistent copy, whatever other threads do to it
    if sampler is not None and sampler.sample(context, ids):
        sampled = 1
        t = now_ns()
    for i in range(PyTuple_GET_SIZE(streams)):
        s = <Stream>PyTuple_GET_ITEM(streams, i)
        lock = core if core is not None else s
        with cython.critical_section(lock):
            if core is None or core._active:
                c = s.cell_for(attributes, clean)
                if c == NEEDS_SANITIZE:
                    # Python code in the section: the table is not half-updated here.
                    attributes = _clean_attributes(attributes, report)
                    clean = True
                    c = s.cell_for(attributes, True)
                if k == V_INT:
                    s.add_i(c, iv)
                else:
                    s.add_d(c, dv)
                if sampled:
                    s.offer(c, k == V_INT, iv, dv, attributes, t, ids[0], ids[1], ids[2], context)
    return 0


cdef inline bint _fast_value(SyncCore core, PyObject *amount, int64_t *iv, double *dv, int *k) noexcept:
    """An exact small int or an exact finite float, of the right sign: nothing to report."""
    k[0] = parse_exact(<object>amount, iv, dv)
    if k[0] == V_INT:
        return not (core._monotonic and iv[0] < 0)
    if k[0] == V_FLOAT:
        return isfinite(dv[0]) and not (core._monotonic and dv[0] < 0)
    return False


cdef inline bint _record_known(SyncCore core, PyObject *amount, PyObject *attributes,
                               PyObject *context) noexcept:
    """The fast path of a measurement (see the module's docstring). True when
    it is done (recorded, or ignored after shutdown); False when nothing was
    recorded and the full path must run. Borrowed arguments, no references taken."""
    cdef int64_t iv = 0
    cdef double dv = 0.0
    cdef int k
    cdef bint done
    cdef om_section section
    cdef om_section2 both
    cdef Py_hash_t h
    cdef Py_ssize_t n
    cdef PyObject *noted[2 * NOTED_PAIRS]
    cdef PyObject *sampler = <PyObject *>core._sampler
    if not core._fast:
        return not core._active or core._n == 0  # ignored; else the full path
    if not _fast_value(core, amount, &iv, &dv, &k):
        return False
    if sampler != <PyObject *>None and not unsampled(<ExemplarSampler>sampler, <object>context):
        return False
    # The core's critical section, on the borrowed core (`with cython.critical_section`
    # would take and drop a reference: atomic operations on a shared object without the GIL).
    # With attributes, the caller's dict's too: its pairs are read, and compared borrowed,
    # while another thread that changes it (and frees the values it replaces) waits.
    # (One call of _add_known, which the compiler inlines.)
    if attributes == <PyObject *>None:
        h = EMPTY_SET_HASH
        n = 0
        om_section_begin(&section, core)
    elif PyDict_CheckExact(<object>attributes):
        om_section2_begin(&both, core, <object>attributes)
        if not hash_attributes(<dict>attributes, None, None, False, &h, &n, noted):
            om_section2_end(&both)
            return False
    else:
        return False
    done = _add_known(core, k, iv, dv, h, attributes, n, noted)
    if attributes == <PyObject *>None:
        om_section_end(&section)
    else:
        om_section2_end(&both)
    return done


cdef inline bint _add_known(SyncCore core, int k, int64_t iv, double dv, Py_hash_t h,
                            PyObject *attributes, Py_ssize_t n, PyObject **noted) noexcept:
    """_record_known's part in the core's critical section: find the series in
    every stream, then add to each; False (nothing recorded) if one lacks it."""
    cdef Py_ssize_t i, ns = core._n
    cdef Py_ssize_t cells[FAST_STREAMS]
    cdef PyObject *s
    if OM_FREE_THREADED and not core._fast:
        return not core._active                  # deactivated or rewired meanwhile
    for i in range(ns):
        s = PyTuple_GET_ITEM(core._streams, i)
        cells[i] = find_cell(<Stream>s, h, <dict>attributes, n, noted)
        if cells[i] < 0:
            return False
    for i in range(ns):
        s = PyTuple_GET_ITEM(core._streams, i)
        if k == V_INT:
            (<Stream>s).add_i(cells[i], iv)
        else:
            (<Stream>s).add_d(cells[i], dv)
    return True


cdef inline int _take(SyncCore core, PyObject *amount, PyObject *attributes, PyObject *context) except -1:
    """One measurement: the fast path, else the full one."""
    if not _record_known(core, amount, attributes, context):
        core._measure(<object>amount, <object>attributes, <object>context)
    return 0


cdef class SyncCore:
    # Shared machinery of the four synchronous instruments.

    cdef tuple _streams
    cdef Py_ssize_t _n
    cdef bint _monotonic
    cdef readonly bint _active
    cdef bint _fast                   # active, 1 to FAST_STREAMS streams, none with a key filter
    cdef object _report
    cdef ExemplarSampler _sampler     # None: exemplars off, no work at all

    def __cinit__(self, *args, **kwargs):
        self._streams = ()
        self._n = 0
        self._active = True

    def _bind_core(self, tuple streams, bint monotonic, object report):
        # Wire the instrument to its streams; ``report(reason)`` hears about drops.
        cdef bint fast
        for st in streams:
            (<Stream>st).owner = self       # its guard: before anything records into it
        fast = 0 < len(streams) <= FAST_STREAMS
        for st in streams:
            fast = fast and (<Stream>st).allowed is None and (<Stream>st).excluded is None
        with cython.critical_section(self):
            self._streams = streams
            self._n = len(streams)
            self._monotonic = monotonic
            if self._report is None:
                # Each wiring brings an equal reporter: the first stays, so a thread that
                # is calling it never sees it freed.
                self._report = report
            # A view's key filter changes the hash of a set, computed once by the fast path.
            self._fast = self._active and fast

    def _set_sampler(self, ExemplarSampler sampler):
        self._sampler = sampler if (sampler is not None and sampler.mode != EX_OFF) else None

    def _deactivate(self):
        # After shutdown: measurements are ignored (none lands once this returns).
        with cython.critical_section(self):
            self._active = False
            self._fast = False

    cdef inline int _value(self, object amount, int64_t *iv, double *dv) except -1:
        cdef int k = parse_value(amount, iv, dv)
        if k == V_DROP:
            self._report(BAD_VALUE)
            return V_DROP
        if k == V_FLOAT and not isfinite(dv[0]):
            self._report(NON_FINITE)
            return V_DROP
        if self._monotonic and ((k == V_INT and iv[0] < 0) or (k == V_FLOAT and dv[0] < 0)):
            self._report(NEGATIVE)
            return V_DROP
        return k

    cdef object _clean(self, object attributes):
        return _clean_attributes(attributes, self._report)

    cdef inline int _measure(self, object amount, object attributes, object context) except -1:
        cdef int64_t iv = 0
        cdef double dv = 0.0
        cdef int k
        cdef tuple streams
        if not self._active or self._n == 0:
            return 0
        try:
            k = self._value(amount, &iv, &dv)
            if k != V_DROP:
                with cython.critical_section(self):
                    streams = self._streams
                _record(streams, k, iv, dv, attributes, context, self._report, self._sampler, self)
        except Exception:
            try:
                self._report(INTERNAL)
            except Exception:
                pass
        return 0

    def _bind_cells(self, attributes):
        # Sanitised attributes, the streams they were pinned in (the core's streams then),
        # and their pinned cell in each (for a bound handle). Each ``pin`` takes the core's
        # critical section itself: none is begun while it is held (3.13's are not re-entrant).
        if OM_FREE_THREADED and PyDict_CheckExact(attributes):
            attributes = PyDict_Copy(attributes)   # as _record: a consistent copy
        clean = self._clean(attributes)
        with cython.critical_section(self):
            streams = self._streams
        return clean, streams, [(<Stream>s).pin(clean) for s in streams]


cdef Py_ssize_t *_cell_array(list cells) except NULL:
    """A bound handle's pinned cells as a C array (PyMem_Malloc'd; the handle frees it)."""
    cdef Py_ssize_t i, n = len(cells)
    cdef Py_ssize_t *out = <Py_ssize_t *>PyMem_Malloc((n or 1) * sizeof(Py_ssize_t))
    if out == NULL:
        raise MemoryError()
    for i in range(n):
        out[i] = cells[i]
    return out


cdef class CounterCore(SyncCore):
    def add(self, amount, attributes=None, context=None):
        _take(self, <PyObject *>amount, <PyObject *>attributes, <PyObject *>context)

    def bind(self, attributes=None):
        # A handle whose ``add`` skips the attribute lookup.
        return BoundHandle(self, attributes)


cdef class HistogramCore(SyncCore):
    def record(self, amount, attributes=None, context=None):
        _take(self, <PyObject *>amount, <PyObject *>attributes, <PyObject *>context)

    def bind(self, attributes=None):
        # A handle whose ``record`` skips the attribute lookup.
        return BoundHandle(self, attributes)


cdef class GaugeCore(SyncCore):
    def set(self, amount, attributes=None, context=None):
        _take(self, <PyObject *>amount, <PyObject *>attributes, <PyObject *>context)

    def bind(self, attributes=None):
        # A handle whose ``set`` skips the attribute lookup.
        return BoundHandle(self, attributes)


@cython.no_gc_clear     # __dealloc__ unpins through _core and _streams: the collector must not clear them first
cdef class BoundHandle:
    # One series of one instrument, looked up once. ``add``, ``record`` and
    # ``set`` are the same operation under the instrument's verb.

    cdef SyncCore _core
    cdef tuple _bound_to          # the core's streams when the cells were pinned
    cdef tuple _streams
    cdef Py_ssize_t *_cells
    cdef Py_ssize_t _n
    cdef readonly dict attributes

    def __cinit__(self, SyncCore core, attributes):
        self._core = core
        self._pin(attributes)

    cdef int _pin(self, object attributes) except -1:
        """Pin this series' cell in each of the core's streams: the handle is new, no
        other thread sees it yet."""
        cdef Py_ssize_t *cells
        clean, streams, pinned = self._core._bind_cells(attributes)
        cells = _cell_array(pinned)
        self._bound_to = self._streams = streams
        self._n = len(pinned)
        self._cells = cells
        self.attributes = clean
        return 0

    cdef int _repin(self) except -1:
        """A reader was added or removed since the cells were pinned: pin in the core's
        current streams, outside its critical section (pinning begins it), then swap the
        new cells in inside it, unless another thread re-pinned first or the streams
        changed again (then the new pins are given back; the caller looks again)."""
        cdef Py_ssize_t i
        cdef Py_ssize_t *cells
        cdef SyncCore core = self._core
        _, streams, pinned = core._bind_cells(self.attributes)
        cells = _cell_array(pinned)
        with cython.critical_section(core):
            if streams is core._streams and self._bound_to is not streams:
                self._unpin()
                self._bound_to = self._streams = streams
                self._n = len(pinned)
                self._cells = cells
                cells = NULL
            else:
                for i in range(len(pinned)):
                    (<Stream>PyTuple_GET_ITEM(streams, i)).unpin(cells[i])
        PyMem_Free(cells)
        return 0

    cdef void _unpin(self):
        cdef Py_ssize_t i
        if self._cells != NULL:
            for i in range(self._n):
                (<Stream>PyTuple_GET_ITEM(self._streams, i)).unpin(self._cells[i])
            PyMem_Free(self._cells)
            self._cells = NULL
        self._n = 0

    def __dealloc__(self):
        if self._cells != NULL:
            with cython.critical_section(self._core):
                self._unpin()

    cdef inline int _apply(self, object amount, object context) except -1:
        cdef int64_t t = 0
        cdef int64_t iv = 0
        cdef double dv = 0.0
        cdef int k
        cdef int sampled = 0
        cdef uint64_t ids[3]
        cdef bint stale = True
        cdef SyncCore core = self._core
        if not core._active:
            return 0
        try:
            k = core._value(amount, &iv, &dv)
        except Exception:
            return 0
        if k == V_DROP:
            return 0
        if core._sampler is not None and core._sampler.sample(context, ids):
            sampled = 1
            t = now_ns()
        while stale:
            with cython.critical_section(core):
                stale = core._active and self._bound_to is not core._streams
                if core._active and not stale:
                    self._add_pinned(k, iv, dv, sampled, t, ids, context)
            if stale:
                # A reader was added or removed since the cells were pinned: pin again so
                # the handle records into exactly the current streams, then record.
                try:
                    self._repin()
                except Exception:
                    return 0
        return 0

    cdef inline int _add_pinned(self, int k, int64_t iv, double dv, int sampled, int64_t t,
                                uint64_t *ids, object context) except -1:
        """_apply's recording into the pinned cells (in the core's critical section)."""
        cdef Py_ssize_t i
        cdef Stream s
        for i in range(self._n):
            s = <Stream>PyTuple_GET_ITEM(self._streams, i)
            if k == V_INT:
                s.add_i(self._cells[i], iv)
            else:
                s.add_d(self._cells[i], dv)
            if sampled:
                s.offer(self._cells[i], k == V_INT, iv, dv, self.attributes, t, ids[0], ids[1], ids[2],
                        context)
        return 0

    cdef inline bint _apply_known(self, PyObject *amount, PyObject *context) noexcept:
        """The fast path (see the module's docstring); False: nothing recorded, run _apply."""
        cdef int64_t iv = 0
        cdef double dv = 0.0
        cdef int k
        cdef bint done
        cdef om_section section
        cdef PyObject *core = <PyObject *>self._core      # borrowed: self holds it
        cdef PyObject *sampler = <PyObject *>(<SyncCore>core)._sampler
        if not (<SyncCore>core)._active:
            return True
        if not _fast_value(<SyncCore>core, amount, &iv, &dv, &k):
            return False
        if sampler != <PyObject *>None and not unsampled(<ExemplarSampler>sampler, <object>context):
            return False
        om_section_begin(&section, <SyncCore>core)        # as in _record_known
        done = self._add_known(<SyncCore>core, k, iv, dv)
        om_section_end(&section)
        return done

    cdef inline bint _add_known(self, SyncCore core, int k, int64_t iv, double dv) noexcept:
        """_apply_known's part in the core's critical section."""
        cdef Py_ssize_t i
        cdef PyObject *s
        if <PyObject *>self._bound_to != <PyObject *>core._streams:
            return False
        if OM_FREE_THREADED and not core._active:
            return True                               # deactivated meanwhile: ignored
        for i in range(self._n):
            s = PyTuple_GET_ITEM(self._streams, i)
            if k == V_INT:
                (<Stream>s).add_i(self._cells[i], iv)
            else:
                (<Stream>s).add_d(self._cells[i], dv)
        return True

    cdef inline int _take(self, PyObject *amount, PyObject *context) except -1:
        """One measurement: the fast path, else the full one."""
        if not self._apply_known(amount, context):
            self._apply(<object>amount, <object>context)
        return 0

    def add(self, amount, context=None):
        self._take(<PyObject *>amount, <PyObject *>context)

    def record(self, amount, context=None):
        self._take(<PyObject *>amount, <PyObject *>context)

    def set(self, amount, context=None):
        self._take(<PyObject *>amount, <PyObject *>context)

def observe(tuple streams, object amount, object attributes, object report):
    # Feed one callback observation into the streams of one reader.
    #
    # Returns True if it was recorded. Values are parsed and attributes
    # sanitised like synchronous ones; no exemplars (there is no measurement
    # context in a callback).
    cdef int64_t iv = 0
    cdef double dv = 0.0
    cdef int k
    try:
        k = parse_value(amount, &iv, &dv)
        if k == V_DROP:
            report(BAD_VALUE)
            return False
        if k == V_FLOAT and not isfinite(dv):
            report(NON_FINITE)
            return False
        _record(streams, k, iv, dv, attributes, None, report, None)   # each stream in its own section
        return True
    except Exception:
        report(INTERNAL)
        return False


# -- positional calls without argument parsing ------------------------------------
#
# The recording methods above are METH_FASTCALL|METH_KEYWORDS functions made by
# Cython, whose argument parsing takes and drops a reference per argument. A
# call with positional arguments only (the usual ``counter.add(1, attrs)``)
# needs none of it: at import each recording method is replaced by a method of
# the same name, flags and docstring whose C function reads the arguments from
# the vector and hands any other call (keywords, a wrong count) to the replaced
# function, which parses and reports errors as before.

cdef extern from *:
    """
    #define OM_FASTCALL_SLOTS 8
    static PyMethodDef om_fastcall_defs[OM_FASTCALL_SLOTS];
    static int om_fastcall_used = 0;
    /* Replace method `name` of `cls` (a METH_FASTCALL|METH_KEYWORDS method
       descriptor) by one calling `fast`; *full receives the replaced function.
       Leaves the method as it is when it is not such a descriptor. */
    static int om_install_fastcall(PyObject *cls, const char *name, void *fast, void **full) {
        PyObject *dict = ((PyTypeObject *)cls)->tp_dict;
        PyObject *descr, *fresh;
        PyMethodDef *def;
        descr = PyDict_GetItemString(dict, name);
        if (descr == NULL || Py_TYPE(descr) != &PyMethodDescr_Type
                || ((PyMethodDescrObject *)descr)->d_method->ml_flags != (METH_FASTCALL | METH_KEYWORDS))
            return 0;
        if (om_fastcall_used >= OM_FASTCALL_SLOTS) {
            PyErr_SetString(PyExc_RuntimeError, "otelmetrics: too many fastcall methods");
            return -1;
        }
        def = &om_fastcall_defs[om_fastcall_used++];
        *def = *((PyMethodDescrObject *)descr)->d_method;
        *full = (void *)def->ml_meth;
        def->ml_meth = (PyCFunction)(void (*)(void))fast;
        fresh = PyDescr_NewMethod((PyTypeObject *)cls, def);
        if (fresh == NULL)
            return -1;
        if (PyDict_SetItemString(dict, name, fresh) < 0) {
            Py_DECREF(fresh);
            return -1;
        }
        Py_DECREF(fresh);
        PyType_Modified((PyTypeObject *)cls);
        return 0;
    }
    """
    int om_install_fastcall(object cls, const char *name, void *fast, void **full) except -1

ctypedef object (*_FastCall)(object, PyObject **, Py_ssize_t, PyObject *)

cdef _FastCall _full_add = NULL
cdef _FastCall _full_record = NULL
cdef _FastCall _full_set = NULL
cdef _FastCall _full_bound_add = NULL
cdef _FastCall _full_bound_record = NULL
cdef _FastCall _full_bound_set = NULL


cdef inline object _sync_call(object self, PyObject **args, Py_ssize_t nargs, PyObject *kwnames,
                              _FastCall full):
    if kwnames != NULL or nargs < 1 or nargs > 3:
        return full(self, args, nargs, kwnames)
    _take(<SyncCore>self, args[0], args[1] if nargs > 1 else <PyObject *>None,
             args[2] if nargs > 2 else <PyObject *>None)
    return None


cdef inline object _bound_call(object self, PyObject **args, Py_ssize_t nargs, PyObject *kwnames,
                               _FastCall full):
    if kwnames != NULL or nargs < 1 or nargs > 2:
        return full(self, args, nargs, kwnames)
    (<BoundHandle>self)._take(args[0], args[1] if nargs > 1 else <PyObject *>None)
    return None


cdef object _add_call(object self, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    return _sync_call(self, args, nargs, kwnames, _full_add)

cdef object _record_call(object self, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    return _sync_call(self, args, nargs, kwnames, _full_record)

cdef object _set_call(object self, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    return _sync_call(self, args, nargs, kwnames, _full_set)

cdef object _bound_add_call(object self, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    return _bound_call(self, args, nargs, kwnames, _full_bound_add)

cdef object _bound_record_call(object self, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    return _bound_call(self, args, nargs, kwnames, _full_bound_record)

cdef object _bound_set_call(object self, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    return _bound_call(self, args, nargs, kwnames, _full_bound_set)


om_install_fastcall(CounterCore, b"add", <void *>_add_call, <void **>&_full_add)
om_install_fastcall(HistogramCore, b"record", <void *>_record_call, <void **>&_full_record)
om_install_fastcall(GaugeCore, b"set", <void *>_set_call, <void **>&_full_set)
om_install_fastcall(BoundHandle, b"add", <void *>_bound_add_call, <void **>&_full_bound_add)
om_install_fastcall(BoundHandle, b"record", <void *>_bound_record_call, <void **>&_full_bound_record)
om_install_fastcall(BoundHandle, b"set", <void *>_bound_set_call, <void **>&_full_bound_set)
