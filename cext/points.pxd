# Exported point types; cimported by the aggregation storage to build points from C.

cdef class _Point:
    pass

cdef class _SeriesPoint(_Point):
    # Attributes arrive from a stream as a flat (k0, v0, k1, v1, ...) tuple and
    # become a dict only when read (an OTLP export never needs the dict).
    cdef object _attributes
    cdef readonly tuple _flat_attributes

cdef class Exemplar(_Point):
    cdef readonly object filtered_attributes, value, time_unix_nano, span_id, trace_id

cdef class NumberDataPoint(_SeriesPoint):
    cdef readonly object start_time_unix_nano, time_unix_nano, value, exemplars

cdef class HistogramDataPoint(_SeriesPoint):
    cdef readonly object start_time_unix_nano, time_unix_nano, count, sum
    cdef readonly object bucket_counts, explicit_bounds, min, max, exemplars

cdef class Buckets(_Point):
    cdef readonly object offset, bucket_counts

cdef class ExponentialHistogramDataPoint(_SeriesPoint):
    cdef readonly object start_time_unix_nano, time_unix_nano, count, sum, scale
    cdef readonly object zero_count, positive, negative, flags, min, max, exemplars
