"""Live capture from a serving engine (`specdec-diag capture`) and the ``specdec-requests@1`` format.

No torch: ingest reads the format, the CLI drives the client.
"""

from __future__ import annotations

from specdec_diag.capture.format import REQUESTS_SCHEMA, RequestsFile, RequestsFileError, read_requests

__all__ = ["REQUESTS_SCHEMA", "RequestsFile", "RequestsFileError", "read_requests"]
