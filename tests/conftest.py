"""The test tree's set-up: the helper directory on sys.path and the hypothesis profiles.

tests/ mirrors the source tree: test_<module>.py for otelmetrics/<module>.py, and
export/, agent/ and native/ (the compiled core, one file per cext source) for the
packages; spec/ holds one file per specification section; the other files at this
level are the cross-cutting suites (differential, threads, fork, hostile input,
bounded memory, API-only, layers, packaging). support/ holds the shared helpers
(no tests there): it goes on sys.path here, so a test imports them by module name
(``from _util import provider``). The sub-folders are packages, so that a test file
may share its name with one in another folder; tests/ itself is not, so pytest puts
tests/ (never the checkout) on sys.path and the installed otelmetrics is the one
imported.

OTELMETRICS_TEST_PROFILE selects how hard property-based tests work:
``default`` (developers, CI), ``emulated`` (the suite under qemu-user, where
everything is ~10x slower) and ``thorough`` (a long local run).
"""
import os
import sys

import pytest
from hypothesis import HealthCheck, settings

from otelmetrics._native import narrow_bucket_limit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))

# grpcio's fork handlers (on by default) restart its poller thread in a forked child; where
# subprocess forks (Python 3.9: 3.10 and later use vfork, which runs no handlers) the child
# closing its inherited files makes that thread abort the child before it execs (a server a
# test starts dies at once, 1 Popen in 20 after the OTLP/gRPC tests). No test uses gRPC in a
# forked child. Read when grpc is first imported, after this.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

settings.register_profile("default", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("emulated", max_examples=12, deadline=None,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("thorough", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("OTELMETRICS_TEST_PROFILE", "default"))


@pytest.fixture(params=["uint32 buckets", "uint64 buckets"])
def bucket_width(request):
    """Both layouts of a histogram's snapshot records: uint32 bucket counts (what a
    collection writes while every count fits) and uint64 ones (forced here; in use
    once a series has counted 2**32 measurements)."""
    old = narrow_bucket_limit(0) if request.param == "uint64 buckets" else None
    try:
        yield request.param
    finally:
        if old is not None:
            narrow_bucket_limit(old)
