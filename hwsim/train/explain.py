"""Why a training step takes what it takes: the parts of its breakdown in sentences, and at
least three what-ifs chosen by the part that limits it, each re-simulated
(:func:`hwsim.train.whatif.train_whatif`), never guessed (``hwsim train --explain``).

Which what-ifs (each only where it applies to the step):

* exposed expert all-to-alls: twice the InfiniBand (NICs and switch links), unrestricted vs
  the model's node-limited routing, DualPipe against 1F1B (or the reverse);
* exposed tensor-parallel communication: TP collectives overlapped with the GEMMs, twice the
  NVLink bandwidth;
* pipeline bubble: the interleaved schedule with two virtual stages, ZB-H1;
* exposed data-parallel communication: twice the InfiniBand, ZeRO-1 instead of ZeRO-3;
* compute: FP8 linears, no recompute (when it fits), twice the HBM bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.spec.errors import SpecError
from hwsim.train.request import TrainRequest
from hwsim.train.result import TrainResult
from hwsim.train.whatif import TrainWhatIf, train_whatif, what_limits

IB_X2 = ("cluster.nics.bandwidth=x2", "cluster.network.link_bandwidth=x2")


@dataclass(frozen=True)
class Explanation:
    result: TrainResult
    sentences: tuple[str, ...]
    whatifs: tuple[tuple[str, TrainWhatIf], ...]

    def lines(self) -> list[str]:
        out = list(self.sentences)
        for label, w in self.whatifs:
            d = w.deltas()["step_time_s"]
            fit = (
                ""
                if w.modified.fits
                else (
                    f", but it needs {w.modified.memory.total / 1e9:.0f} GB per GPU: does not fit"
                )
            )
            out.append(f"what if {label}: step {d['change']:+.1%} "
                       f"({d['baseline']:.3g} s -> {d['whatif']:.3g} s){fit}")  # fmt: skip
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "sentences": list(self.sentences),
            "whatifs": [{"label": k, **w.to_dict()} for k, w in self.whatifs],
            "result": self.result.to_dict(),
        }


def _candidates(req: TrainRequest, r: TrainResult) -> list[tuple[str, tuple[str, ...]]]:
    parts = sorted(r.breakdown_s.items(), key=lambda kv: -kv[1])
    out: list[tuple[str, tuple[str, ...]]] = []
    lay = r.layout
    for name, sec in parts:
        if sec <= 0:
            continue
        if name == "ep_exposed" and req.cluster:
            out += [("twice the InfiniBand", IB_X2), ("unrestricted routing", ("node_limit=0",))]
            other = "1f1b" if req.schedule == "dualpipe" else "dualpipe"
            if lay.pp % 2 == 0 and lay.pp > 1:
                out.append((f"{other} schedule", (f"schedule={other}",)))
        elif name == "tp_exposed":
            if not req.tp_overlap:
                out.append(("TP overlapped with GEMMs", ("tp_overlap=true",)))
            if req.cluster:
                out.append(("twice the NVLink", ("cluster.intra_node.bandwidth=x2",)))
        elif name == "pipeline_bubble" and lay.pp > 1:
            if req.schedule != "interleaved" and (r.micro_batches % lay.pp == 0):
                out.append(("interleaved schedule, 2 virtual stages",
                            ("schedule=interleaved", "vpp=2")))  # fmt: skip
            if req.schedule != "zb":
                out.append(("ZB-H1 schedule", ("schedule=zb",)))
        elif name == "dp_exposed":
            if req.cluster:
                out.append(("twice the InfiniBand", IB_X2))
            if req.zero == 3:
                out.append(("ZeRO-1", ("zero=1",)))
        elif name == "compute":
            if req.dtype != "fp8":
                out.append(("FP8 linears", ("dtype=fp8",)))
            if req.recompute != "none":
                out.append(("no recompute", ("recompute=none",)))
            out.append(("twice the HBM bandwidth", ("memory.hbm.bandwidth=x2",)))
    seen: set[tuple[str, ...]] = set()
    uniq = []
    for label, ch in out:
        if ch not in seen:
            seen.add(ch)
            uniq.append((label, ch))
    return uniq


def explain_train(req: TrainRequest, at_least: int = 3) -> Explanation:
    """The step, what limits it, and ``at_least`` re-simulated what-ifs (more when the first
    ones do not apply)."""
    from hwsim.train.step import simulate_train

    r = simulate_train(req)
    sentences = [f"what limits the step: {what_limits(r)}."]
    top = max(r.breakdown_s.items(), key=lambda kv: kv[1])
    sentences.append(
        f"the largest part is {top[0]} ({top[1] / r.step_time_s:.0%}); the pipeline bubble is "
        f"{r.bubble_fraction:.1%} of the busiest stage's time and the memory per GPU "
        f"{r.memory.total / 1e9:.1f} GB of {r.memory.capacity / 1e9:.0f} GB."
    )
    whatifs: list[tuple[str, TrainWhatIf]] = []
    for label, changes in _candidates(req, r):
        try:
            whatifs.append((label, train_whatif(req, changes)))
        except SpecError:
            continue  # a change this step cannot take (a layout rule): try the next
        if len(whatifs) >= at_least and label:
            break
    return Explanation(r, tuple(sentences), tuple(whatifs))
