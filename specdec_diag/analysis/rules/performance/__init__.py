"""Performance rules: whether speculation pays, and what eats the gain - an expensive drafter, a
sequential verifier, a compute-bound batch, missing CUDA graphs, or a full server.

One module per rule, named after its code; the family is this package (``Rule.family``). The rules
are listed in :mod:`specdec_diag.analysis.rules.registry`.
"""
