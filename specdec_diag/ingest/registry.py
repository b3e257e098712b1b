"""The sources a scan tries, listed explicitly. Adding a source: write its module (ending in
``SOURCE = Source(...)``, see :class:`specdec_diag.ingest.base.Source`) and add it here. A module that
fails to import fails the import of ingest, and so every test, instead of silently dropping an engine.
"""

from __future__ import annotations

from specdec_diag.ingest import (
    aiperf,
    bench,
    generated_text,
    launch,
    llamacpp,
    llamacpp_speedbench,
    paste,
    prometheus,
    requests,
    sglang,
    trace,
    trtllm,
    trtllm_bench,
    vllm,
)
from specdec_diag.ingest.base import Source

#: in the order they are tried (order only affects row order, never results).
SOURCES: tuple[Source, ...] = (
    trace.SOURCE,
    vllm.SOURCE,
    sglang.SOURCE,
    llamacpp.SOURCE,
    llamacpp_speedbench.SOURCE,
    prometheus.SOURCE,
    trtllm.SOURCE,
    trtllm_bench.SOURCE,
    aiperf.SOURCE,
    generated_text.SOURCE,
    requests.SOURCE,
    bench.SOURCE,
    launch.SOURCE,
    paste.SOURCE,
)
