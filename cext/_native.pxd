# The declarations of otelmetrics._native (_native.pyx), one file per concept,
# in dependency order: types and inline helpers the included sources share.

include "values.pxd"
include "clock.pxd"
include "ieee754.pxd"
include "attributes.pxd"
include "points.pxd"
include "exemplars.pxd"
include "table.pxd"
include "expo_histogram.pxd"
include "aggregations.pxd"
