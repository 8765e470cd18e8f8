"""Chapter 4 (heads): reference implementations in the exercises' signatures, built on the package."""

from __future__ import annotations

import torch


def prior_bias(prior_prob: float) -> float:
    """Exercise 4.1: the logit of ``prior_prob`` (``torch.logit``), as a Python float."""
    return torch.logit(torch.tensor(prior_prob, dtype=torch.float64)).item()
