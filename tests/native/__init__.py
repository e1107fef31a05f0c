"""Tests of the compiled core, otelmetrics._native (cext/): one file per source
(test_<name>.py for cext/<name>.pxi), directly and through the SDK."""
