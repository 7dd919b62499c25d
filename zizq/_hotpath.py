"""Chooses the Cython hot path, or its pure-Python twin.

``ZIZQ_NO_EXTENSIONS=1`` (any non-empty value but "0") forces the pure twin,
as it does at build time. ``EXTENSION`` says which one was loaded.
"""

from __future__ import annotations

import os

if os.environ.get("ZIZQ_NO_EXTENSIONS", "") not in ("", "0"):
    from ._speedups_py import (
        IdGenerator,
        canonical_json,
        encode_id,
        encode_payload,
        fields_to_dict,
        hash_of,
    )

    EXTENSION = False
else:
    try:
        from ._speedups import (  # type: ignore[no-redef]
            IdGenerator,
            canonical_json,
            encode_id,
            encode_payload,
            fields_to_dict,
            hash_of,
        )

        EXTENSION = True
    except ImportError:
        from ._speedups_py import (
            IdGenerator,
            canonical_json,
            encode_id,
            encode_payload,
            fields_to_dict,
            hash_of,
        )

        EXTENSION = False

__all__ = [
    "EXTENSION",
    "IdGenerator",
    "canonical_json",
    "encode_id",
    "encode_payload",
    "fields_to_dict",
    "hash_of",
]
