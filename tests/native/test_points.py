"""The exported data points of the compiled core (cext/points.pxi): the
field names, order and constructor arguments of opentelemetry-sdk's point classes,
equality and repr by fields, and plain dicts for JSON."""
import dataclasses
import json

import pytest
from opentelemetry.sdk.metrics._internal.exemplar import Exemplar as RefExemplar
from opentelemetry.sdk.metrics.export import Buckets as RefBuckets
from opentelemetry.sdk.metrics.export import ExponentialHistogramDataPoint as RefExpo
from opentelemetry.sdk.metrics.export import HistogramDataPoint as RefHistogram
from opentelemetry.sdk.metrics.export import NumberDataPoint as RefNumber

from otelmetrics._native import (
    Buckets,
    Exemplar,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    NumberDataPoint,
)

EXEMPLAR = dict(filtered_attributes={"f": 1}, value=2.5, time_unix_nano=7, span_id=3, trace_id=4)
KWARGS = {
    Exemplar: EXEMPLAR,
    NumberDataPoint: dict(attributes={"a": "x"}, start_time_unix_nano=1, time_unix_nano=2, value=3,
                          exemplars=[Exemplar(**EXEMPLAR)]),
    HistogramDataPoint: dict(attributes={"a": "x"}, start_time_unix_nano=1, time_unix_nano=2, count=3,
                             sum=4.5, bucket_counts=[1, 2, 0], explicit_bounds=[1.0, 10.0], min=0.5,
                             max=3.0, exemplars=[]),
    Buckets: dict(offset=-2, bucket_counts=[1, 0, 4]),
    ExponentialHistogramDataPoint: dict(attributes={}, start_time_unix_nano=1, time_unix_nano=2, count=6,
                                        sum=9.0, scale=3, zero_count=1, positive=Buckets(-2, [1, 0, 4]),
                                        negative=Buckets(0, []), flags=0, min=0.0, max=4.0, exemplars=[]),
}
REFERENCE = {Exemplar: RefExemplar, NumberDataPoint: RefNumber, HistogramDataPoint: RefHistogram,
             Buckets: RefBuckets, ExponentialHistogramDataPoint: RefExpo}


@pytest.mark.parametrize("cls", list(KWARGS), ids=lambda c: c.__name__)
def test_fields_in_the_order_of_the_reference(cls):
    point = cls(**KWARGS[cls])
    assert list(point.to_dict()) == [f.name for f in dataclasses.fields(REFERENCE[cls])]
    assert cls(*KWARGS[cls].values()) == point            # positional, in that order


@pytest.mark.parametrize("cls", list(KWARGS), ids=lambda c: c.__name__)
def test_equality_and_repr_by_fields(cls):
    kwargs = KWARGS[cls]
    point = cls(**kwargs)
    assert point == cls(**kwargs) and not point != cls(**kwargs)
    first = next(iter(kwargs))
    other = dict(kwargs, **{first: -1 if not isinstance(kwargs[first], dict) else {"other": 1}})
    assert point != cls(**other)
    assert repr(point).startswith(cls.__name__ + "(") and ("%s=" % first) in repr(point)
    with pytest.raises(TypeError):
        hash(point)


def test_to_dict_is_plain_json_with_nested_points():
    point = NumberDataPoint(**KWARGS[NumberDataPoint])
    d = point.to_dict()
    assert d["exemplars"] == [EXEMPLAR]
    assert json.loads(json.dumps(d)) == d
    expo = ExponentialHistogramDataPoint(**KWARGS[ExponentialHistogramDataPoint]).to_dict()
    assert expo["positive"] == {"offset": -2, "bucket_counts": [1, 0, 4]}
