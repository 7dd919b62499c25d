"""Chooses the Cython hot path, or its pure-Python twin.

``ZIZQ_NO_EXTENSIONS=1`` (any non-empty value but "0") forces the pure twin,
as it does at build time. ``EXTENSION`` says which one was loaded. The pure
twin is the typed contract both follow.
"""

from __future__ import annotations

import os

from zizq import _speedups_py as _impl

EXTENSION = False
if os.environ.get("ZIZQ_NO_EXTENSIONS", "") in ("", "0"):
    try:
        from zizq import _speedups as _impl  # type: ignore[attr-defined,no-redef]

        EXTENSION = True
    except ImportError:
        pass

IdGenerator = _impl.IdGenerator
canonical_json = _impl.canonical_json
encode_id = _impl.encode_id
encode_payload = _impl.encode_payload
hash_of = _impl.hash_of

__all__ = [
    "EXTENSION",
    "IdGenerator",
    "canonical_json",
    "encode_id",
    "encode_payload",
    "hash_of",
]
