# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, binding=False, auto_pickle=False, freethreading_compatible=True, optimize.unpack_method_calls=False, always_allow_keywords=False
"""otelmetrics._native: the compiled core, one extension module.

Its sources are included here, one file per concept (cext/README.md maps them),
in the order their module-level code runs; their declarations are in
_native.pxd. One module, not one per file: no cross-module calls through
function-pointer tables, and Cython's module boilerplate and shared utility
code compiled once (cext/README.md, "Build flags").
"""

include "points.pxi"
include "attributes.pxi"
include "exemplars.pxi"
include "table.pxi"
include "expo_histogram.pxi"
include "aggregations.pxi"
include "instruments.pxi"
include "otlp_wire.pxi"
include "otlp_json.pxi"
include "prometheus_text.pxi"
include "json_text.pxi"
