"""What an upgrade asks of a cluster's API: nodes, the node agent's annotations, pods and evictions.

Every call goes through the official client; failures come back as ``kube.ClusterError``
with the reason in words.
"""
from __future__ import annotations

import json
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from clusters import kube

AGENT = "nodeagent.corral.io/"
DESIRED = AGENT + "desired-version"
AGENT_STATE = AGENT + "state"
OBSERVED = AGENT + "observed-version"
AGENT_MESSAGE = AGENT + "message"
CORDONED_BY = "upgrade.corral.io/cordoned-by"  # which upgrade cordoned the node (removed on uncordon)
MERGE = "application/merge-patch+json"
TIMEOUT = (kube.CONNECT_TIMEOUT, kube.READ_TIMEOUT)


def annotations(node: dict[str, Any]) -> dict[str, str]:
    return (node.get("metadata") or {}).get("annotations") or {}


def agent_failed(node: dict[str, Any], version: str) -> str:
    """The node agent's failure message for ``version``, or "" if it has not failed on it."""
    ann = annotations(node)
    if ann.get(AGENT_STATE) == "Failed" and ann.get(OBSERVED) == version:
        return ann.get(AGENT_MESSAGE) or "the node agent reports the upgrade failed"
    return ""


def ready_condition(node: dict[str, Any]) -> dict[str, Any]:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond
    return {}


class ClusterApi:
    """A thin layer over CoreV1Api and CustomObjectsApi that speaks raw JSON (fast for big node lists)."""

    def __init__(self, kubeconfig: str, *, insecure_tls: bool = False):
        self.api = kube.api_client(kubeconfig, allow_insecure=insecure_tls)
        self.core = k8s.CoreV1Api(self.api)
        self.custom = k8s.CustomObjectsApi(self.api)
        self.server = self.api.configuration.host

    def close(self) -> None:
        self.api.close()

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, _request_timeout=TIMEOUT, **kwargs)
        except ApiException:
            raise
        except Exception as exc:  # noqa: BLE001 - network trouble becomes a reason in words
            raise kube.explain(exc, self.server) from None

    def _raw(self, fn, *args, **kwargs) -> dict[str, Any]:
        try:
            response = self._call(fn, *args, _preload_content=False, **kwargs)
        except ApiException as exc:
            raise kube.explain(exc, self.server) from None
        return json.loads(response.data or b"{}")

    # ------------------------------------------------------------------ nodes
    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["metadata"]["name"]: n for n in self._raw(self.core.list_node).get("items") or []}

    def patch_node(self, name: str, patch: dict[str, Any]) -> None:
        try:
            self._call(self.core.patch_node, name, patch, _content_type=MERGE, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return  # the node left the cluster; the engine notices on its next look
            raise kube.explain(exc, self.server) from None

    def cordon(self, name: str, by: str = "") -> None:
        """Cordon a node, noting which upgrade did it (so a resumed run knows the cordon is its own)."""
        self.patch_node(name, {"spec": {"unschedulable": True}, "metadata": {"annotations": {CORDONED_BY: by or None}}})

    def uncordon(self, name: str) -> None:
        self.patch_node(name, {"spec": {"unschedulable": None}, "metadata": {"annotations": {CORDONED_BY: None}}})

    def request_version(self, name: str, version: str, *, retry: bool = False, cordon_by: str = "") -> None:
        """Ask the node agent for ``version`` (cordoning the node in the same request when ``cordon_by``
        names the upgrade); ``retry`` clears a Failed state so the agent tries again."""
        ann: dict[str, Any] = {DESIRED: version}
        if retry:
            ann[AGENT_STATE] = None
        patch: dict[str, Any] = {"metadata": {"annotations": ann}}
        if cordon_by:
            patch["spec"] = {"unschedulable": True}
            ann[CORDONED_BY] = cordon_by
        self.patch_node(name, patch)

    # ------------------------------------------------------------------ pods and evictions
    def pods_on(self, node: str) -> list[dict[str, Any]]:
        return self._raw(self.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={node}").get("items") or []

    def evict(self, namespace: str, name: str, grace_period: int | None) -> str:
        """Evict a pod: "" when accepted or already gone, else the refusal (429: a PodDisruptionBudget)."""
        body = k8s.V1Eviction(
            api_version="policy/v1beta1", kind="Eviction",
            metadata=k8s.V1ObjectMeta(name=name, namespace=namespace),
            delete_options=k8s.V1DeleteOptions(grace_period_seconds=grace_period) if grace_period is not None else None,
        )
        try:
            self._call(self.core.create_namespaced_pod_eviction, name, namespace, body, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return ""
            if exc.status == 429:
                return _status_message(exc) or "eviction refused (429 Too Many Requests)"
            raise kube.explain(exc, self.server) from None
        return ""

    # ------------------------------------------------------------------ custom objects (Plans)
    def get_custom(self, group: str, version: str, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return self._raw(self.custom.get_namespaced_custom_object, group, version, namespace, plural, name)
        except kube.ClusterError as exc:
            if exc.status == 404:
                return None
            raise

    def list_custom(self, group: str, version: str, namespace: str, plural: str, **kw) -> list[dict[str, Any]]:
        return self._raw(self.custom.list_namespaced_custom_object, group, version, namespace, plural, **kw).get("items") or []

    def put_custom(self, group: str, version: str, namespace: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create the object, or replace the spec of the one that is there."""
        name = body["metadata"]["name"]
        existing = self.get_custom(group, version, namespace, plural, name)
        if existing is None:
            return self._raw(self.custom.create_namespaced_custom_object, group, version, namespace, plural, body)
        body = {**body, "metadata": {**body["metadata"], "resourceVersion": existing["metadata"]["resourceVersion"]}}
        return self._raw(self.custom.replace_namespaced_custom_object, group, version, namespace, plural, name, body)

    def delete_custom(self, group: str, version: str, namespace: str, plural: str, name: str) -> None:
        try:
            self._raw(self.custom.delete_namespaced_custom_object, group, version, namespace, plural, name)
        except kube.ClusterError as exc:
            if exc.status != 404:
                raise

    def version(self) -> str:
        try:
            return self._call(k8s.VersionApi(self.api).get_code).git_version
        except ApiException as exc:
            raise kube.explain(exc, self.server) from None


def _status_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return ""
    causes = (body.get("details") or {}).get("causes") or []
    return "; ".join(c.get("message", "") for c in causes if c.get("message")) or body.get("message", "")
