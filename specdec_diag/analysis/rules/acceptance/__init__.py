"""Acceptance rules: how much of the draft the target keeps, how that depends on the draft position,
on time, on context length and on temperature, and whether speculation runs at all.

Each rule judges *units*: one engine's windows (source + engine_id) or one trace's speculative steps,
so two servers or two traces in one input are never mixed.

One module per rule, named after its code; the family is this package (``Rule.family``). The rules
are listed in :mod:`specdec_diag.analysis.rules.registry`.
"""
