"""Self-contained, interactive HTML snapshots of the lessons (``python -m export``).

Run-time code: no torch. The public API::

    from export import build_snapshot, export_snapshot
    export_snapshot("snapshot.html", "If the file does not exist...", lessons="attention,bpe")
"""

from export.snapshot import (
    LESSONS,
    SnapshotError,
    build_snapshot,
    export_snapshot,
    snapshot_of_state,
    write_snapshot,
)

__all__ = [
    "LESSONS",
    "SnapshotError",
    "build_snapshot",
    "export_snapshot",
    "snapshot_of_state",
    "write_snapshot",
]
