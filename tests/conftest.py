"""Shared pytest setup: hypothesis profiles. CI uses the bounded, derandomized
'ci' profile (HYPOTHESIS_PROFILE=ci); 'dev' explores more, randomly."""
import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=40,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
