"""Correctness rules: invariants every speculative step must satisfy, checked on trace steps
(docs/theory.md §6) and, where engine logs carry the signal, on windows. These catch "fast but
wrong" decoders: a verifier that is bypassed, a cache that is not rolled back, a dropped bonus token.

One module per rule, named after its code; the family is this package (``Rule.family``). The rules
are listed in :mod:`specdec_diag.analysis.rules.registry`.
"""
