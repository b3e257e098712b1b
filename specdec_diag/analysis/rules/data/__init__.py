"""Input-quality rules: lines that did not parse, numbers that engines define differently from what
users assume, and benchmark artifacts that make the numbers unrepresentative.

One module per rule, named after its code; the family is this package (``Rule.family``). The rules
are listed in :mod:`specdec_diag.analysis.rules.registry`.
"""
