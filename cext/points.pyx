# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, embedsignature=True
"""Exported data points: the objects a collection hands to readers and exporters.

Extension types so that a collection of thousands of series builds its points
from C without going through Python-level constructors. Field names and
constructor signatures are those of opentelemetry-sdk's point classes.

Points hold plain data (numbers, str, tuples, lists of exemplars), never
references that could close a cycle, so they stay out of the cyclic garbage
collector: a collection of thousands of points triggers no GC passes.
"""

cimport cython

cdef tuple _NUMBER_FIELDS = ("attributes", "start_time_unix_nano", "time_unix_nano", "value", "exemplars")
cdef tuple _HISTOGRAM_FIELDS = ("attributes", "start_time_unix_nano", "time_unix_nano", "count", "sum",
                               "bucket_counts", "explicit_bounds", "min", "max", "exemplars")
cdef tuple _EXPO_FIELDS = ("attributes", "start_time_unix_nano", "time_unix_nano", "count", "sum", "scale",
                          "zero_count", "positive", "negative", "flags", "min", "max", "exemplars")
cdef tuple _BUCKETS_FIELDS = ("offset", "bucket_counts")
cdef tuple _EXEMPLAR_FIELDS = ("filtered_attributes", "value", "time_unix_nano", "span_id", "trace_id")


cdef class _Point:
    """Shared behaviour: equality and repr by fields, conversion to plain dicts."""

    cdef tuple _fields(self):
        return ()

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        cdef str f
        for f in self._fields():
            if getattr(self, f) != getattr(other, f):
                return False
        return True

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    __hash__ = None

    def __repr__(self):
        return "%s(%s)" % (
            type(self).__name__,
            ", ".join("%s=%r" % (f, getattr(self, f)) for f in self._fields()),
        )

    def to_dict(self):
        """Plain dict (JSON-ready) in the reference SDK's field order."""
        out = {}
        cdef str f
        for f in self._fields():
            v = getattr(self, f)
            if isinstance(v, _Point):
                v = v.to_dict()
            elif isinstance(v, dict):
                v = dict(v)
            elif isinstance(v, (list, tuple)):
                v = [x.to_dict() if isinstance(x, _Point) else x for x in v]
            out[f] = v
        return out


@cython.no_gc
cdef class _SeriesPoint(_Point):
    """A point of one series: its attribute set as a dict, built on first read."""

    @property
    def attributes(self):
        cdef Py_ssize_t j
        cdef tuple flat
        if self._attributes is None and self._flat_attributes is not None:
            flat = self._flat_attributes
            d = {}
            for j in range(0, len(flat), 2):
                d[flat[j]] = flat[j + 1]
            self._attributes = d
        return self._attributes


@cython.no_gc
cdef class Exemplar(_Point):
    """A sampled measurement: value, time, dropped attributes and span context."""

    def __init__(self, filtered_attributes, value, time_unix_nano, span_id=None, trace_id=None):
        self.filtered_attributes = filtered_attributes
        self.value = value
        self.time_unix_nano = time_unix_nano
        self.span_id = span_id
        self.trace_id = trace_id

    cdef tuple _fields(self):
        return _EXEMPLAR_FIELDS


@cython.no_gc
cdef class NumberDataPoint(_SeriesPoint):
    """One series of a Sum or Gauge."""

    def __init__(self, attributes, start_time_unix_nano, time_unix_nano, value, exemplars=()):
        self._attributes = attributes
        self.start_time_unix_nano = start_time_unix_nano
        self.time_unix_nano = time_unix_nano
        self.value = value
        self.exemplars = list(exemplars)

    cdef tuple _fields(self):
        return _NUMBER_FIELDS


@cython.no_gc
cdef class HistogramDataPoint(_SeriesPoint):
    """One series of an explicit-bucket Histogram."""

    def __init__(self, attributes, start_time_unix_nano, time_unix_nano, count, sum,
                 bucket_counts, explicit_bounds, min, max, exemplars=()):
        self._attributes = attributes
        self.start_time_unix_nano = start_time_unix_nano
        self.time_unix_nano = time_unix_nano
        self.count = count
        self.sum = sum
        self.bucket_counts = bucket_counts
        self.explicit_bounds = explicit_bounds
        self.min = min
        self.max = max
        self.exemplars = list(exemplars)

    cdef tuple _fields(self):
        return _HISTOGRAM_FIELDS


@cython.no_gc
cdef class Buckets(_Point):
    """The positive or negative bucket range of an exponential histogram point."""

    def __init__(self, offset, bucket_counts):
        self.offset = offset
        self.bucket_counts = bucket_counts

    cdef tuple _fields(self):
        return _BUCKETS_FIELDS


@cython.no_gc
cdef class ExponentialHistogramDataPoint(_SeriesPoint):
    """One series of a base-2 ExponentialHistogram."""

    def __init__(self, attributes, start_time_unix_nano, time_unix_nano, count, sum, scale,
                 zero_count, positive, negative, flags, min, max, exemplars=()):
        self._attributes = attributes
        self.start_time_unix_nano = start_time_unix_nano
        self.time_unix_nano = time_unix_nano
        self.count = count
        self.sum = sum
        self.scale = scale
        self.zero_count = zero_count
        self.positive = positive
        self.negative = negative
        self.flags = flags
        self.min = min
        self.max = max
        self.exemplars = list(exemplars)

    cdef tuple _fields(self):
        return _EXPO_FIELDS
