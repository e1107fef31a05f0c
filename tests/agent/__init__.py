"""Tests of otelmetrics/agent/: one file per module (test_<module>.py), on the
fixture trees in tests/data/agent/."""
