"""Hypothesis settings of the fuzz suite: bounded for CI; PKI_FUZZ_EXAMPLES raises the count for a long run."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("PKI_FUZZ_EXAMPLES", "300"))

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("PKI_FUZZ_RANDOM") is None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# Requests that sign certificates cost milliseconds each: fewer of them.
FUZZ_SLOW = settings(FUZZ, max_examples=max(20, EXAMPLES // 5))
