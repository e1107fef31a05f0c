# The attribute table of a metric stream: attribute set -> cell, bounded by the
# cardinality limit (cell 0 is the overflow series). See table.pxi.
#
# Contract:
# - instruments.pxi finds a cell with cell_for() (NEEDS_SANITIZE: sanitise the
#   attributes and ask again), records with add_i()/add_d(), offers a sampled
#   measurement with offer(), and pins/releases cells for bound handles with
#   pin()/unpin();
# - aggregations.pxi subclasses Stream and implements the aggregation hooks:
#   storage per cell (grow_cells, init_cell, new_cell_objects, adopt_cell),
#   recording (add_i, add_d, each starting with touch), collection
#   (snapshot_cell: Python-free copy, make_point: the point object), and
#   bucket_of for bucket-aligned exemplar reservoirs;
# - the pipeline calls collect_snapshot(now) (a Snapshot, below: the copied
#   cells, points built on demand); collect(now) is its points at once;
#   Snapshot records are read by otlp_wire.pxi and prometheus_text.pxi with
#   aggregations.pxd's layouts (records_readable(), below: while no points are built).
# find_cell and touch are inline, so the recording path (instruments.pxi,
# aggregations.pxi) reaches a known series' cell without a function call.
# Inline code here compiles under the directives of the module that cimports it.

from cpython.list cimport PyList_GET_ITEM
from cpython.mem cimport PyMem_Realloc
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_SIZE
from libc.stdint cimport int64_t, uint64_t, uint32_t, uint8_t, int32_t


# Cell lookup results besides a cell index.
cdef enum:
    NEEDS_SANITIZE = -2
    OVERFLOW_CELL = 0

# Cell flags.
cdef enum:
    CELL_TOUCHED = 1        # measured since the last collection
    CELL_LIVE = 2           # holds a series (overflow cell: has ever been used)
    CELL_HASDATA = 4        # measured at least once (a bound handle may pin an empty cell)


cdef inline void *grow_array(void *p, Py_ssize_t n, size_t item) except NULL:
    """Reallocate a per-cell array to ``n`` items (never to zero bytes)."""
    cdef void *q = PyMem_Realloc(p, <size_t>n * item if n > 0 else item)
    if q == NULL:
        raise MemoryError()
    return q


cdef class Snapshot


cdef class Stream:
    cdef readonly Py_ssize_t limit
    cdef readonly bint delta
    cdef readonly bint is_async
    cdef readonly uint64_t overflowed      # measurements that went to the overflow cell
    cdef readonly int64_t created_ns
    cdef int64_t last_collect_ns
    cdef Py_ssize_t cap, n_used, n_live
    cdef list keys                          # attribute key tuple per cell; None = free
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
    cdef StreamExemplars ex                 # None: no exemplars
    cdef object owner                       # whose critical section guards the stream (None: its own)

    cdef Py_ssize_t cell_for(self, object attributes, bint clean) except -3
    cdef Py_ssize_t _insert(self, Py_hash_t h, dict d, Py_ssize_t n) except -3
    cdef inline Py_ssize_t _overflow(self) noexcept
    cdef Py_ssize_t _reclaim(self) except -1
    cdef void _free_cell(self, Py_ssize_t c) noexcept
    cdef int _grow(self, Py_ssize_t newcap) except -1
    cdef int _rebuild_index(self, Py_ssize_t size) except -1
    cdef void unpin(self, Py_ssize_t c) noexcept
    cdef void _first_data(self, Py_ssize_t c) noexcept
    cdef int offer(self, Py_ssize_t c, bint isint, int64_t iv, double dv, object attributes,
                   int64_t t, uint64_t thi, uint64_t tlo, uint64_t span, object context) except -1

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
    cdef Py_ssize_t bucket_of(self, double v) noexcept
    cpdef list collect(self, int64_t now)
    # Collection without points (see Snapshot below).
    cdef char *spare                        # a released snapshot buffer, reused by the next collection
    cdef Py_ssize_t spare_cap
    cpdef Snapshot collect_snapshot(self, int64_t now)
    cdef int _snapshot_into(self, Snapshot snap, Py_ssize_t n_cells, Py_ssize_t rec, Py_ssize_t need,
                            bint reset, int64_t interval_start, list attrs, TakenExemplars ex,
                            int64_t now) except -1
    cdef bint stable_snapshot(self) noexcept
    cdef Py_ssize_t snapshot_record_size(self) noexcept


cdef class Snapshot:
    # One collection of one stream, as copied in its Python-free phase: ``count``
    # records of ``rec`` bytes in ``buf`` (int64 start, then the stream's snapshot
    # record), ``attrs[i]`` the flat attribute tuple of record i, ``now`` the end.
    # Points are built from it on demand (points()); until then an encoder may read
    # the records (buf != NULL) with the stream's layout (aggregations.pxd).
    cdef readonly Stream stream
    cdef char *buf                          # NULL once the points are built
    cdef Py_ssize_t cap
    cdef readonly Py_ssize_t count
    cdef readonly Py_ssize_t rec            # bytes per record
    cdef readonly int64_t now
    cdef list attrs
    cdef TakenExemplars ex
    cdef list built                         # the points, once built
    cpdef list points(self)
    cdef list _build(self)
    cdef object _point(self, Py_ssize_t i, object now, list exemplars)
    cdef object point_at(self, Py_ssize_t i)
    cdef void _release(self) noexcept


cdef extern from *:
    """
    /* A critical section begun and ended at two points of a function (the `with
       cython.critical_section` block cannot end mid-block): free-threaded CPython's
       PyCriticalSection, nothing with the GIL; om_section2 holds two objects'. */
    #ifdef Py_GIL_DISABLED
    typedef PyCriticalSection om_section;
    #define om_section_begin(s, o) PyCriticalSection_Begin((s), (o))
    #define om_section_end(s) PyCriticalSection_End(s)
    typedef PyCriticalSection2 om_section2;
    #define om_section2_begin(s, a, b) PyCriticalSection2_Begin((s), (a), (b))
    #define om_section2_end(s) PyCriticalSection2_End(s)
    #define OM_FREE_THREADED 1
    #else
    typedef int om_section;
    #define om_section_begin(s, o) ((void)(s), (void)(o))
    #define om_section_end(s) ((void)(s))
    typedef int om_section2;
    #define om_section2_begin(s, a, b) ((void)(s), (void)(a), (void)(b))
    #define om_section2_end(s) ((void)(s))
    #define OM_FREE_THREADED 0
    #endif
    """
    ctypedef int om_section
    void om_section_begin(om_section *s, object o) noexcept
    void om_section_end(om_section *s) noexcept
    ctypedef int om_section2
    void om_section2_begin(om_section2 *s, object a, object b) noexcept
    void om_section2_end(om_section2 *s) noexcept
    bint OM_FREE_THREADED           # compiled on free-threaded CPython


cdef inline object guard(Stream s):
    """The object whose critical section (free-threaded CPython) every access to the
    stream's table and cells holds: the instrument core recording into it (``owner``,
    set when the core binds it), else the stream itself (asynchronous instruments)."""
    return s.owner if s.owner is not None else s


cdef inline Py_ssize_t find_cell(Stream s, Py_hash_t h, dict d, Py_ssize_t n, PyObject **noted) noexcept:
    """The cell of the attribute set ``d`` (``n`` kept pairs, hash ``h``; None
    when n is 0) in ``s``, or -1. ``noted``: the pairs hash_attributes noted,
    or NULL. Runs no Python code."""
    cdef Py_ssize_t i, c, mask = s.index_size - 1
    cdef PyObject *stored
    i = <Py_ssize_t>(<size_t>h & <size_t>mask)
    while True:
        c = s.index[i]
        if c < 0:
            return -1
        if s.hashes[c] == h:
            stored = PyList_GET_ITEM(s.keys, c)
            if PyTuple_GET_SIZE(<tuple>stored) == 2 * n and (
                    n == 0 or same_attributes(<tuple>stored, d, noted, n)):
                return c
        i = (i + 1) & mask


cdef inline void touch(Stream s, Py_ssize_t c) noexcept:
    """Mark cell ``c`` measured: every add_i/add_d starts with it."""
    if not (s.flags[c] & CELL_HASDATA):
        s._first_data(c)        # once per series: out of line, so adds stay small
    s.flags[c] |= CELL_TOUCHED


cdef inline bint records_readable(Snapshot snap) noexcept:
    """Whether ``snap``'s records are its data, to be written or sliced from them
    (otlp_wire.pxi, prometheus_text.pxi, json_text.pxi, Snapshot.point_at and slice):
    they are there, no points were built and no exemplars were taken (once taken, the
    points, built with them, are the data)."""
    return snap.buf != NULL and snap.built is None and snap.ex is None
