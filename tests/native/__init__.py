"""Tests of the compiled core, otelmetrics._native (cext/): one file per module
(test_<module>.py), directly and through the SDK."""
