"""NO_CUDA_GRAPH: Decode batches run without CUDA graphs while speculating."""

from __future__ import annotations

import polars as pl

from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule, label
from specdec_diag.analysis.stats import interval


class NoCudaGraph(Rule):
    """Decode batches run without CUDA graphs while speculating.

    **What it detects.** Speculative windows with ``cuda_graph`` false (SGLang ``cuda graph: False``)
    in at least ``no_graph_share`` of one engine's speculative windows. The flag is printed by the
    engine, not estimated, so ``min_explicit_windows`` windows (one) are enough: a pasted excerpt of two
    decode lines at batch 48 without graphs is the whole story. Its launch-time equivalents count too:
    ``disable_cuda_graph=True`` (SGLang ``--disable-cuda-graph``), ``enforce_eager=True`` or
    ``cudagraph_mode=NONE`` (vLLM ``--enforce-eager``, ``--compilation-config '{"cudagraph_mode": "NONE"}'``)
    in the configuration of a speculative setup - a startup dump or a pasted launch command alike -
    unless decode lines of the same log show graphs on. Shows the running batch sizes with and without
    graphs and the configured ``cuda_graph_max_bs`` when the startup line is present.

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
    needs = (Need("windows", "min_explicit_windows", "speculative decode windows printing cuda graph: False"),
             Need("config_records", 1, "launch settings disabling graphs (--disable-cuda-graph, enforce_eager)"))
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
                off, score=0.5 * off.height / f.height, sample=self.sample(ctx, "windows", off.height, explicit=True),
                interval=interval("share of speculative windows without graphs", off.height, f.height)))
        out.extend(self._config(ctx, {f.locations[0]["path"] for f in out if f.locations}))
        return out

    def _config(self, ctx: Context, done: set[str]) -> list[Finding]:
        """Graphs switched off at launch (``--disable-cuda-graph``, ``enforce_eager=True``) on a
        speculative setup: explicit, whatever the decode lines show (or when there are none)."""
        from specdec_diag.analysis.rules.acceptance.spec_inactive import SPEC_CONFIG_KEYS

        cfg = ctx.configs
        if cfg.is_empty():
            return []
        off = cfg.filter((pl.col("key").is_in(list(_GRAPH_OFF_KEYS))
                          & pl.col("value").str.to_lowercase().is_in(["true", "1", "yes"]))
                         | ((pl.col("key") == "cudagraph_mode") & pl.col("value").str.to_uppercase().is_in(["NONE", "0"])))
        out = []
        for src in off["source"].unique(maintain_order=True).to_list():
            if src in done:
                continue
            spec = cfg.filter((pl.col("source") == src) & pl.col("key").is_in(list(SPEC_CONFIG_KEYS))
                              & ~pl.col("value").str.to_lowercase().is_in(["none", "null", "0", "false", ""]))
            spec_lines = ctx.spec_windows.filter(pl.col("source") == src).height if ctx.spec_windows.height else 0
            graphs_on = ctx.windows.filter((pl.col("source") == src) & pl.col("cuda_graph").fill_null(False)).height \
                if ctx.windows.height else 0
            if (spec.is_empty() and not spec_lines) or graphs_on:
                continue
            rows = off.filter(pl.col("source") == src)
            flags = {k: v for k, v in rows.select("key", "value").iter_rows()}
            out.append(self.finding(
                ctx, f"CUDA graphs disabled at launch in {label(src)} ({', '.join(f'{k}={v}' for k, v in flags.items())}) "
                     "on a speculative setup",
                {"flags": flags, "speculative_records": spec_lines,
                 "definitions": {"flags": "launch settings that turn CUDA graphs off"}},
                "Drop --disable-cuda-graph / enforce_eager (SGLang, vLLM) and size the capture batch sizes "
                "(--cuda-graph-max-bs, cuda_graph_sizes) to the served batch.",
                rows, score=0.4, sample=self.sample(ctx, "config_records", rows.height, explicit=True)))
        return out


#: configuration keys whose true value switches CUDA graphs off
_GRAPH_OFF_KEYS = ("disable_cuda_graph", "enforce_eager")
