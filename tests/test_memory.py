"""The one memory-budget rule of the inferers and planners."""

import psutil
import pytest

from monai_inr.inferers.memory import GB, memory_budget_bytes


def test_given_budget_is_used_as_is():
    assert memory_budget_bytes(1.5) == 1.5 * GB
    assert memory_budget_bytes(0.001, device="cpu") == pytest.approx(0.001 * GB)


def test_default_cpu_budget_is_capped_and_counts_what_is_in_use():
    budget = memory_budget_bytes()
    rss = psutil.Process().memory_info().rss
    assert rss < budget <= 6 * GB
    assert memory_budget_bytes(device="cpu") == pytest.approx(budget, rel=0.05)
