"""The instrumented reference decoder (needs the ``[decoder]`` extra: torch + transformers).

Modules: ``models`` (load and check a target/draft pair), ``acceptance`` (the rules), ``policies``
(gamma schedules), ``speculative`` (the step and :func:`speculative.generate`), ``tracing`` (trace
files), ``faults`` (injectable engine bugs). Nothing outside this package imports torch.
"""
