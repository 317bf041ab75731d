"""kubesim: a fleet of simulated Kubernetes clusters behind one loopback HTTP server.

Public entry points: `start_fleet()` (in-process, background threads) and
`python -m kubesim serve` (see README.md).
"""

from .cluster import Cluster, Timings
from .etcd import SnapshotError
from .sim import Fleet, start_fleet

__all__ = ["Cluster", "Fleet", "SnapshotError", "Timings", "start_fleet"]
