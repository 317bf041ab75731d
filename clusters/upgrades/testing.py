"""Simulated clusters and a readiness sampler, shared by the upgrade tests and benchmarks.

Timings are small so a 9-node upgrade takes seconds, with ``upgrade_down`` longer than
``node_grace``: a node being upgraded is NotReady long enough for the node controller to
mark its pods NotReady, as a real kubelet restart does. That is what makes the parallel
mode's downtime visible.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import yaml

FAST_TIMINGS = {"pod_start": 0.15, "pod_stop": 0.05, "job_run": 0.1, "heartbeat": 0.05, "node_status": 5,
                "node_grace": 0.3, "eviction_timeout": 120, "upgrade_down": 0.6}


def rke_cluster(name: str, nodes: dict[str, int], *, version: str = "v1.15.11", replicas: int = 3,
                min_available: int | None = 2, timings: dict[str, float] | None = None) -> dict[str, Any]:
    """A fleet-file cluster entry with a Deployment ``web`` (and a PodDisruptionBudget)."""
    workload: dict[str, Any] = {"deployment": {"name": "web", "namespace": "default", "replicas": replicas,
                                               "image": "nginx:1.17.9"}}
    if min_available is not None:
        workload["pdb"] = {"name": "web", "minAvailable": min_available}
    return {"name": name, "kind": "rke", "version": version, "nodes": nodes,
            "workloads": [workload] if replicas else [], "timings": {**FAST_TIMINGS, **(timings or {})}}


def zero_downtime_fleet(name: str = "zdt", timings: dict[str, float] | None = None) -> dict[str, Any]:
    """3 etcd + 3 control plane + 3 workers on v1.15.11; Deployment web (3 replicas) with PDB minAvailable 2."""
    return {"clusters": [rke_cluster(name, {"etcd": 3, "controlplane": 3, "worker": 3}, timings=timings)]}


def k3s_cluster(name: str, servers: int = 1, agents: int = 2, *, version: str = "v1.17.4+k3s1",
                timings: dict[str, float] | None = None) -> dict[str, Any]:
    return {"name": name, "kind": "k3s", "version": version, "nodes": {"server": servers, "agent": agents},
            "timings": {**FAST_TIMINGS, **(timings or {})}}


def client_for(kubeconfig: str):
    from kubernetes import config

    return config.new_client_from_config_dict(yaml.safe_load(kubeconfig))


class ReadySampler(threading.Thread):
    """Counts the ready, not terminating pods of an app as often as it can, from its own thread."""

    def __init__(self, kubeconfig: str, selector: str = "app=web", namespace: str = "default",
                 interval: float = 0.01):
        super().__init__(name="ready-sampler", daemon=True)
        from kubernetes import client

        self.api = client_for(kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.selector, self.namespace, self.interval = selector, namespace, interval
        self.samples: list[tuple[float, int]] = []
        self.errors = 0
        self._halt = threading.Event()

    def count(self) -> int:
        raw = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector, _preload_content=False)
        ready = 0
        for pod in json.loads(raw.data).get("items") or []:
            if pod["metadata"].get("deletionTimestamp"):
                continue
            if any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (pod.get("status") or {}).get("conditions") or []):
                ready += 1
        return ready

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.samples.append((time.monotonic(), self.count()))
            except Exception:  # noqa: BLE001 - a missed sample is counted, not fatal
                self.errors += 1
            self._halt.wait(self.interval)

    def stop(self) -> ReadySampler:
        self._halt.set()
        self.join(5)
        self.api.close()
        return self

    @property
    def minimum(self) -> int:
        return min(n for _, n in self.samples)
