"""specdec-diag: diagnose speculative decoding — why it is slow, why acceptance is low, and whether
the verifier is producing wrong output."""

__version__ = "0.1.0"
