"""The base-2 exponential histogram as a metric stream.

Each series owns two ExpoHistogramCell objects, created when the series
appears: ``act`` receives measurements; ``aux`` is the running cumulative
histogram (cumulative temporality: each collection merges ``act`` into it and
resets ``act``, which reproduces the reference SDK's numbers exactly, float
sums included) or the spare that ``act`` is swapped with (delta). Both moves
are C calls with no Python code, so a collection splits the measurements of
concurrent threads cleanly between intervals.
"""

from cpython.list cimport PyList_GET_ITEM
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.stdint cimport int64_t

from otelmetrics._native.streams cimport Stream
from otelmetrics._native.expo_histogram cimport ExpoHistogramCell


ctypedef struct ExpoSnap:
    PyObject *cell      # owned reference to the cell holding the interval's data


cdef class ExpoHistogramStream(Stream):
    cdef list act
    cdef list aux
    cdef readonly int max_size
    cdef readonly int max_scale
    cdef readonly bint record_min_max

    def __init__(self, Py_ssize_t limit=2000, bint delta=False, bint is_async=False,
                 object allowed_keys=None, object excluded_keys=None,
                 int max_size=160, int max_scale=20, bint record_min_max=True):
        ExpoHistogramCell(max_size, max_scale, record_min_max)   # validates the parameters
        self.max_size = max_size
        self.max_scale = max_scale
        self.record_min_max = record_min_max
        self.act = []
        self.aux = []
        self.snap_size = sizeof(ExpoSnap)
        self._init_storage()
        # The overflow cell (0) exists from the start.
        self.adopt_cell(0, self.new_cell_objects())

    cdef int grow_cells(self, Py_ssize_t newcap) except -1:
        while len(self.act) < newcap:
            self.act.append(None)
            self.aux.append(None)
        return 0

    cdef object new_cell_objects(self):
        return (ExpoHistogramCell(self.max_size, self.max_scale, self.record_min_max),
                ExpoHistogramCell(self.max_size, self.max_scale, self.record_min_max))

    cdef void adopt_cell(self, Py_ssize_t c, object pending) noexcept:
        # Swapping list items: reference counting only, no allocation.
        self.act[c] = (<tuple>pending)[0]
        self.aux[c] = (<tuple>pending)[1]

    cdef inline ExpoHistogramCell _cell(self, Py_ssize_t c):
        return <ExpoHistogramCell>PyList_GET_ITEM(self.act, c)

    cdef void add_i(self, Py_ssize_t c, int64_t v) noexcept:
        self._touch(c)
        self._cell(c).record_int(v)

    cdef void add_d(self, Py_ssize_t c, double v) noexcept:
        self._touch(c)
        self._cell(c).record(v)

    cdef void snapshot_cell(self, Py_ssize_t c, char *dst, bint reset) noexcept:
        cdef ExpoSnap *s = <ExpoSnap *>dst
        cdef object act = <object>PyList_GET_ITEM(self.act, c)
        cdef object aux = <object>PyList_GET_ITEM(self.aux, c)
        if self.delta:
            # The spare (emptied after the previous collection) takes over.
            self.act[c] = aux
            self.aux[c] = act
            s.cell = <PyObject *>act
        else:
            (<ExpoHistogramCell>aux).merge_from(<ExpoHistogramCell>act)
            (<ExpoHistogramCell>act).reset()
            s.cell = <PyObject *>aux
        Py_INCREF(<object>s.cell)

    cdef object make_point(self, char *src, object attributes, object start, object now, list exemplars):
        cdef ExpoSnap *s = <ExpoSnap *>src
        cdef ExpoHistogramCell cell = <ExpoHistogramCell>s.cell
        Py_XDECREF(s.cell)        # `cell` holds it now
        s.cell = NULL
        point = cell.to_point(attributes, start, now, exemplars)
        if self.delta:
            cell.reset()          # it becomes the spare for the next interval
        return point
