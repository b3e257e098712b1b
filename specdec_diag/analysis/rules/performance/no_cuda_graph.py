"""NO_CUDA_GRAPH: Decode batches run without CUDA graphs while speculating."""

from __future__ import annotations

import polars as pl

from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule, label


class NoCudaGraph(Rule):
    """Decode batches run without CUDA graphs while speculating.

    **What it detects.** Speculative windows with ``cuda_graph`` false (SGLang ``cuda graph: False``)
    in at least ``no_graph_share`` of one engine's speculative windows. The flag is printed by the
    engine, not estimated, so ``min_explicit_windows`` windows (one) are enough: a pasted excerpt of two
    decode lines at batch 48 without graphs is the whole story. Shows the running batch sizes
    with and without graphs and the configured ``cuda_graph_max_bs`` when the startup line is present.

    **Why it matters.** Drafting is many small kernels; without graphs launch overhead dominates. SGLang
    launched with ``--cuda-graph-max-bs 2`` and served at concurrency > 2 (EAGLE #298, sglang #5274);
    EAGLE-3 276 → 378 tok/s once graphs were on (sglang PR #4247); fastrl PR #4 5.4k → 6.1k tok/s.

    **Evidence.** ``windows_without_graph``, ``windows``, ``max_running_with_graph``,
    ``min_running_without_graph``, ``cuda_graph_max_bs``.

    **Example.** 31 of 40 decode windows ``cuda graph: False`` at 8-16 running requests;
    ``cuda_graph_max_bs=4``.

    **Fix.** Raise ``--cuda-graph-max-bs`` (SGLang) / capture sizes (vLLM ``cuda_graph_sizes``,
    no ``enforce_eager``) to cover the served batch sizes.
    """

    code = "NO_CUDA_GRAPH"
    name = "no CUDA graphs"
    severity = "warning"
    thresholds = ("no_graph_share", "min_explicit_windows")
    needs = (Need("windows", "min_explicit_windows", "speculative decode windows printing cuda graph: False"),)
    problems = (2,)

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        for (src, eng), g in ctx.window_groups():
            f = g.filter(pl.col("cuda_graph").is_not_null())
            off = f.filter(~pl.col("cuda_graph"))
            if off.height < th.min_explicit_windows or off.height / f.height < th.no_graph_share:
                continue
            on = f.filter(pl.col("cuda_graph"))
            cfg = ctx.configs.filter((pl.col("source") == src) & (pl.col("key") == "cuda_graph_max_bs"))
            ev = {"windows_without_graph": off.height, "windows": f.height,
                  "max_running_with_graph": int(on["running_reqs"].max()) if on.height and
                  on["running_reqs"].null_count() < on.height else None,
                  "min_running_without_graph": int(off["running_reqs"].min()) if
                  off["running_reqs"].null_count() < off.height else None,
                  "cuda_graph_max_bs": cfg["value"][0] if cfg.height else None,
                  "definitions": {"windows_without_graph": "speculative decode windows with cuda_graph false"}}
            unit_name = label(src, eng)
            need = ev["min_running_without_graph"]
            out.append(self.finding(
                ctx, f"{off.height} of {f.height} speculative decode windows ran without CUDA graphs in {unit_name}", ev,
                "Raise SGLang --cuda-graph-max-bs (or vLLM capture sizes; drop enforce_eager) to cover the served "
                "batch sizes" + (f" (at least {need})" if need else "") + ".",
                off, score=0.5 * off.height / f.height, sample=self.sample(ctx, "windows", off.height, explicit=True)))
        return out
