"""Tests of otelmetrics/export/: one file per module (test_<module>.py)."""
