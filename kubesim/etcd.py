"""Point-in-time snapshots of one cluster's whole state, etcd style.

Format (like an etcd snapshot file, the integrity hash is appended):

    b"KUBESIM-ETCD-SNAPSHOT/1\\n" + zlib(JSON document) + sha256(preceding bytes)

The JSON document holds the revision, the API server version and every
object by storage key.  `restore()` checks magic, hash and structure before
touching anything, so a corrupt or truncated blob changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cluster import Cluster

MAGIC = b"KUBESIM-ETCD-SNAPSHOT/1\n"


class SnapshotError(ValueError):
    """The blob is not a snapshot this simulator can restore."""


def snapshot(cluster: Cluster) -> bytes:
    rv, items = cluster.store.dump()
    doc = {
        "cluster": cluster.name,
        "revision": rv,
        "version": cluster.version,
        "taken": time.time(),
        "objects": [[key, data.decode()] for key, data in items],
    }
    body = MAGIC + zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 6)
    return body + hashlib.sha256(body).digest()


def verify(blob: bytes) -> dict[str, Any]:
    """Parse and check a snapshot; raises SnapshotError with the reason."""
    if len(blob) < len(MAGIC) + 32 or not blob.startswith(MAGIC):
        raise SnapshotError("not a kubesim etcd snapshot (bad magic)")
    body, digest = blob[:-32], blob[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise SnapshotError("snapshot file integrity check failed: sha256 mismatch")
    try:
        doc = json.loads(zlib.decompress(body[len(MAGIC):]))
        objects = [(str(k), json.loads(v)) for k, v in doc["objects"]]
        revision = int(doc["revision"])
    except (ValueError, KeyError, TypeError, zlib.error) as e:
        raise SnapshotError(f"snapshot is corrupt: {e}") from None
    for key, obj in objects:
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict) or not obj["metadata"].get("name"):
            raise SnapshotError(f"snapshot is corrupt: object without metadata.name under {key}")
    return {"cluster": doc.get("cluster"), "revision": revision, "version": doc.get("version"),
            "taken": doc.get("taken"), "objects": objects}


def restore(cluster: Cluster, blob: bytes) -> dict[str, Any]:
    """Replace the cluster's state with the snapshot's (like restoring every etcd member)."""
    doc = verify(blob)
    with cluster.lock:
        def fields_for(key: str) -> Any:
            rt = cluster.types().by_key.get(key)
            return rt.field_getter if rt else None

        cluster.store.load(doc["revision"], doc["objects"], fields_for)
        cluster.on_restore()
    cluster.log("etcd", f"restored snapshot of {doc['cluster']} at revision {doc['revision']}")
    return {"cluster": doc["cluster"], "revision": doc["revision"], "version": doc["version"],
            "objects": len(doc["objects"]), "currentRevision": cluster.store.rv}
