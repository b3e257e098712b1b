"""The instrumented reference decoder (needs the ``[decoder]`` extra: torch + transformers).

Modules: ``models`` (load and check a target/draft pair), ``verification`` (the acceptance rules and
the verifier's token, shared by decode and replay), ``policies`` (gamma schedules), ``speculative``
(the step and :func:`speculative.generate`), ``tracing`` (trace files), ``faults`` (injectable engine
bugs, as hooks around the step), ``replay`` (re-verify a trace). Nothing outside this package imports torch.
"""
