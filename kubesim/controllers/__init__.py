"""Controllers of one cluster, run level-triggered on the fleet's loop thread.

Each pass reads the store, compares with the desired state and writes through
the API server (so clients see ordinary watch events).  Reads within one pass
share decoded objects; controllers must fetch a fresh copy before changing one.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

from .. import errors
from ..util import dig, short_hash

if TYPE_CHECKING:
    from ..cluster import Cluster


class ControllerManager:
    def __init__(self, cluster: Cluster) -> None:
        from . import deployments, disruption, kubebench, kubelet, scheduler, upgrades, workloads

        self.cluster = cluster
        self._cache: dict[str, list[dict[str, Any]]] = {}
        # decoded objects by (id, revision) of their immutable entries; kept across passes
        # only while a cluster bootstraps (settle), else dropped with each pass
        self._decoded: dict[tuple[int, int], dict[str, Any]] = {}
        self.kubelets = kubelet.Kubelets(cluster)
        self.steps = [
            workloads.namespaces,
            workloads.garbage_collect,
            deployments.deployments,
            deployments.replicasets,
            workloads.daemonsets,
            workloads.statefulsets,
            workloads.jobs,
            disruption.pdb_status,
            scheduler.schedule,
            kubebench.static_pods,
            self.kubelets.sync_pods,
            kubebench.kube_bench_pods,
            upgrades.host_pods,
            upgrades.system_upgrade_controller,
            workloads.endpoints,
        ]
        cluster.store.listeners.append(self._invalidate)

    def _invalidate(self, key: str, _type: str, _obj: dict[str, Any]) -> None:
        self._cache.pop(key, None)

    def objs(self, key: str, ns: str | None = None) -> list[dict[str, Any]]:
        """Decoded objects of `key` for this pass: read-only."""
        got = self._cache.get(key)
        if got is None:
            dec = self._decoded
            got = []
            for _, e in self.cluster.store.entries(key):
                k = (id(e), e.rv)
                o = dec.get(k)
                if o is None:
                    o = dec[k] = e.obj()
                got.append(o)
            self._cache[key] = got
        if ns is None:
            return got
        return [o for o in got if o["metadata"].get("namespace") == ns]

    def reconcile(self) -> None:
        try:
            for step in self.steps:
                step(self.cluster, self)
        finally:
            self._cache.clear()
            if not self.cluster.bootstrapping:
                self._decoded.clear()

    def start(self) -> None:
        self.kubelets.start()

    def stop(self) -> None:
        self.kubelets.stop()

    # -- write helpers used by all controllers -------------------------------
    def create(self, key: str, obj: dict[str, Any]) -> dict[str, Any] | None:
        rt = self.cluster.rt(key)
        try:
            return self.cluster.api.create(rt, obj["metadata"].get("namespace"), obj)
        except errors.ApiError as e:
            if e.code in (404, 409, 403):
                return None
            raise

    def update(self, key: str, obj: dict[str, Any], status: bool = False) -> dict[str, Any] | None:
        rt = self.cluster.rt(key)
        meta = obj["metadata"]
        try:
            return self.cluster.api.update(rt, meta.get("namespace", ""), meta["name"], obj,
                                           subresource="status" if status else None)
        except errors.ApiError as e:
            if e.code in (404, 409):
                return None
            raise

    def delete(self, key: str, ns: str, name: str, grace: int | None = None, policy: str | None = None) -> None:
        rt = self.cluster.rt(key)
        opts: dict[str, Any] = {}
        if grace is not None:
            opts["gracePeriodSeconds"] = grace
        if policy:
            opts["propagationPolicy"] = policy
        try:
            self.cluster.api.delete(rt, ns, name, opts)
        except errors.ApiError as e:
            if e.code != 404:
                raise

    def fresh(self, key: str, obj: dict[str, Any]) -> dict[str, Any] | None:
        meta = obj["metadata"]
        return self.cluster.store.get(key, meta.get("namespace", ""), meta["name"])


def template_hash(template: dict[str, Any]) -> str:
    return short_hash(json.dumps(template, sort_keys=True), 10)


def pod_from_template(owner: dict[str, Any], template: dict[str, Any], name: str | None = None,
                       generate: str | None = None) -> dict[str, Any]:
    t = copy.deepcopy(template)
    meta = t.get("metadata") or {}
    pod_meta: dict[str, Any] = {"namespace": owner["metadata"]["namespace"], "ownerReferences": [controller_ref(owner)]}
    if name:
        pod_meta["name"] = name
    else:
        pod_meta["generateName"] = generate or owner["metadata"]["name"] + "-"
    if meta.get("labels"):
        pod_meta["labels"] = dict(meta["labels"])
    if meta.get("annotations"):
        pod_meta["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": t.get("spec") or {}}


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(r.get("uid") == uid and r.get("controller") for r in dig(obj, "metadata", "ownerReferences", default=[]))


def controller_ref(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def pod_ready(pod: dict[str, Any]) -> bool:
    for c in dig(pod, "status", "conditions", default=[]):
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def pod_active(pod: dict[str, Any]) -> bool:
    return not dig(pod, "metadata", "deletionTimestamp") and dig(pod, "status", "phase") not in ("Succeeded", "Failed")


def node_ready(node: dict[str, Any]) -> bool:
    for c in dig(node, "status", "conditions", default=[]):
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False
