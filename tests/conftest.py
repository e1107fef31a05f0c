"""Shared fixtures and the hypothesis profiles.

OTELMETRICS_TEST_PROFILE selects how hard property-based tests work:
``default`` (developers, CI), ``emulated`` (the suite under qemu-user, where
everything is ~10x slower) and ``thorough`` (a long local run).
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("emulated", max_examples=12, deadline=None,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("thorough", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("OTELMETRICS_TEST_PROFILE", "default"))
