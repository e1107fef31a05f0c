"""Every public name of opentelemetry-sdk's metrics packages is importable from
ours (the README's migration table: change the import lines). A name the
reference adds shows up here as a failing test, not as a user's ImportError."""
import importlib

import pytest

import otelmetrics
from otelmetrics import export, view

PAIRS = [
    ("opentelemetry.sdk.metrics", otelmetrics),
    ("opentelemetry.sdk.metrics.export", export),
    ("opentelemetry.sdk.metrics.view", view),
]


@pytest.mark.parametrize("reference, ours", PAIRS, ids=[p[0] for p in PAIRS])
def test_every_public_name_of_the_reference_is_ours_too(reference, ours):
    ref = importlib.import_module(reference)
    names = [n for n in getattr(ref, "__all__", dir(ref)) if not n.startswith("_")]
    assert names, "the reference exports no names: the test would prove nothing"
    missing = sorted(n for n in names if not hasattr(ours, n))
    assert not missing, "%s lacks %s" % (ours.__name__, missing)


def test_our_all_lists_only_names_that_exist():
    for module in (otelmetrics, export, view):
        for name in module.__all__:
            assert getattr(module, name) is not None, (module.__name__, name)


def test_builtin_reservoirs_are_exemplar_reservoirs_and_users_subclass_the_base():
    assert isinstance(otelmetrics.SimpleFixedSizeExemplarReservoir(2), otelmetrics.ExemplarReservoir)
    assert isinstance(otelmetrics.AlignedHistogramBucketExemplarReservoir(), otelmetrics.ExemplarReservoir)
    with pytest.raises(TypeError):
        otelmetrics.ExemplarReservoir()      # abstract, as the reference's

    class Mine(otelmetrics.ExemplarReservoir):
        def offer(self, value, time_unix_nano, attributes, context):
            self.last = value

        def collect(self, point_attributes):
            return [otelmetrics.Exemplar({}, self.last, 1)]

    provider = otelmetrics.MeterProvider(
        metric_readers=[export.InMemoryMetricReader()], exemplar_filter=otelmetrics.AlwaysOnExemplarFilter(),
        views=[view.View(instrument_name="c", exemplar_reservoir_factory=lambda agg: Mine())],
        shutdown_on_exit=False)
    provider.get_meter("m").create_counter("c").add(5)
    (reader,) = provider._readers
    (point,) = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
    assert [e.value for e in point.exemplars] == [5]


def test_meter_and_timeout_error_are_the_classes_in_use():
    provider = otelmetrics.MeterProvider(shutdown_on_exit=False)
    assert isinstance(provider.get_meter("m"), otelmetrics.Meter)
    assert issubclass(otelmetrics.MetricsTimeoutError, Exception)


def test_cardinality_limits_argument_as_opentelemetry_sdk_1_45():
    reader = export.InMemoryMetricReader(cardinality_limits={otelmetrics.Counter: 3})
    provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    meter = provider.get_meter("m")
    counter, updown = meter.create_counter("c"), meter.create_up_down_counter("u")
    for i in range(10):
        counter.add(1, {"i": i})
        updown.add(1, {"i": i})
    metrics = {m.name: m for m in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics}
    assert len(metrics["c"].data.data_points) == 3              # the limit, overflow series included
    assert sum(p.value for p in metrics["c"].data.data_points) == 10   # nothing lost
    assert len(metrics["u"].data.data_points) == 10             # other kinds keep the default
    with pytest.raises(ValueError):
        export.InMemoryMetricReader(cardinality_limits={otelmetrics.Counter: 0})
