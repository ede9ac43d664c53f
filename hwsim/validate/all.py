"""Imports every suite module so that each registers itself (explicit list, no reflection)."""

from __future__ import annotations

# Each suite module adds one import line here.
from hwsim.validate import (
    deepep,  # noqa: F401  (suite deepep-normal)
    fa3,  # noqa: F401  (suite fa3-h100)
    fa3_bwd,  # noqa: F401  (suite fa3-bwd-h100)
    gpu_ops,  # noqa: F401  (suite gpu-ops)
    nongpu,  # noqa: F401  (suite nongpu-decode)
    serving,  # noqa: F401  (suite serving)
    training,  # noqa: F401  (suite training)
)
