"""Suite ``fa3-bwd-h100``: FlashAttention-3 backward TFLOP/s on an H100 SXM5 (12 rows).

The table (``workloads/measured/flash_attention3_h100_bwd.csv``, provenance beside it) is the
FA3 paper's backward figure, head dim 64 and 128 without a causal mask, 16k tokens per batch.
The metric is FlashAttention's own: 2.5 × the forward FLOPs ``4·batch·seqlen²·heads·head_dim``
over the time of the whole backward call (:func:`hwsim.plan.attention.flash_flops`). Rows are
predicted by :func:`hwsim.sim.gpu_attention.simulate_attention` with the ``fa3`` profile: its
forward values (fitted on the forward table) plus the two backward parameters
``bwd_mma_efficiency`` and ``bwd_softmax_overlap``, fitted once on this table
(:mod:`hwsim.validate.fit_attention_bwd`; docs/calibration-attention.md).
"""

from __future__ import annotations

from hwsim.validate.core import SuiteResult, register
from hwsim.validate.fa3 import MEASURED_DIR, load_table, predict

TABLE = MEASURED_DIR / "flash_attention3_h100_bwd.csv"
#: Targets of issue 19: MAPE ≤ 12 % over the 12 rows, no row worse than 25 %.
TARGETS = {"mape": 0.12, "max": 0.25}


@register("fa3-bwd-h100")
def suite() -> SuiteResult:
    return SuiteResult("fa3-bwd-h100", tuple(predict(load_table(TABLE))), dict(TARGETS))
