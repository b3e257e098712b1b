"""Configuration rules: facts about the setup (startup lines, trace headers) that decide correctness
before a single token is generated: mismatched vocabularies and lossy acceptance rules.

One module per rule, named after its code; the family is this package (``Rule.family``). The rules
are listed in :mod:`specdec_diag.analysis.rules.registry`.
"""
