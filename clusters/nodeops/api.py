"""What node operations ask of a cluster's API: nodes, pods and evictions, Plans, Jobs, any object by path.

Every call goes through the official client (typed APIs where they exist, ``ApiClient.call_api`` for
objects the client has no class for, such as a v1beta1 CRD); failures come back as
``kube.ClusterError`` with the reason in words. Calls are counted so tests and benchmarks can tell
how hard an operation leans on the API server.
"""
from __future__ import annotations

import json
import threading
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from clusters import kube

CORDONED_BY = "upgrade.corral.io/cordoned-by"  # which operation cordoned the node (removed on uncordon)
MERGE = "application/merge-patch+json"
TIMEOUT = (kube.CONNECT_TIMEOUT, kube.READ_TIMEOUT)


class ClusterApi:
    """A thin layer over the client that speaks raw JSON (fast for big node lists)."""

    def __init__(self, kubeconfig: str, *, insecure_tls: bool = False):
        self.api = kube.api_client(kubeconfig, allow_insecure=insecure_tls)
        self.core = k8s.CoreV1Api(self.api)
        self.custom = k8s.CustomObjectsApi(self.api)
        self.batch = k8s.BatchV1Api(self.api)
        self.server = self.api.configuration.host
        self.requests = 0  # API requests sent, watches counted once each
        self._count_lock = threading.Lock()

    def close(self) -> None:
        self.api.close()

    def count(self) -> None:
        with self._count_lock:
            self.requests += 1

    def _call(self, fn, *args, **kwargs):
        self.count()
        kwargs.setdefault("_request_timeout", TIMEOUT)
        try:
            return fn(*args, **kwargs)
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

    def request(self, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None,
                content_type: str = "application/json") -> dict[str, Any]:
        """Any API path (``/apis/apps/v1/namespaces/x/deployments``) through the client's own transport."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        method, url, headers, body, post = self.api.param_serialize(
            method, path, query_params=list((query or {}).items()), header_params=headers, body=body,
            auth_settings=["BearerToken"])
        try:
            response = self._call(self.api.call_api, method, url, header_params=headers, body=body, post_params=post)
            data = response.read()
            if response.status >= 400:
                raise ApiException(status=response.status, reason=response.reason,
                                   body=(data or b"").decode("utf-8", "replace"))
        except ApiException as exc:
            raise kube.explain(exc, self.server) from None
        return json.loads(data or b"{}")

    def put(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create the object in ``collection``, or replace the one of that name (Secrets, ConfigMaps)."""
        try:
            return self.request("POST", collection, body)
        except kube.ClusterError as exc:
            if exc.status != 409:
                raise
        return self.request("PUT", f"{collection}/{body['metadata']['name']}", body)

    def exists(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None when the server answers 404."""
        try:
            return self.request("GET", path)
        except kube.ClusterError as exc:
            if exc.status == 404:
                return None
            raise

    # ------------------------------------------------------------------ nodes
    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["metadata"]["name"]: n for n in self._raw(self.core.list_node).get("items") or []}

    def list_nodes(self) -> dict[str, Any]:
        """The raw NodeList (items and the list's resourceVersion, where a watch resumes)."""
        return self._raw(self.core.list_node)

    def patch_node(self, name: str, patch: dict[str, Any]) -> None:
        try:
            self._call(self.core.patch_node, name, patch, _content_type=MERGE, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return  # the node left the cluster; the engine notices on its next look
            raise kube.explain(exc, self.server) from None

    def cordon(self, name: str, by: str = "") -> None:
        """Cordon a node, noting which operation did it (so a resumed run knows the cordon is its own)."""
        self.patch_node(name, {"spec": {"unschedulable": True}, "metadata": {"annotations": {CORDONED_BY: by or None}}})

    def uncordon(self, name: str) -> None:
        self.patch_node(name, {"spec": {"unschedulable": None}, "metadata": {"annotations": {CORDONED_BY: None}}})

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

    # ------------------------------------------------------------------ jobs
    def jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return self._raw(self.batch.list_namespaced_job, namespace, label_selector=selector).get("items") or []

    def delete_job(self, namespace: str, name: str) -> None:
        try:
            self._call(self.batch.delete_namespaced_job, name, namespace, propagation_policy="Background",
                       _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise kube.explain(exc, self.server) from None

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

    def create_custom(self, group: str, version: str, namespace: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._raw(self.custom.create_namespaced_custom_object, group, version, namespace, plural, body)

    def patch_custom(self, group: str, version: str, namespace: str, plural: str, name: str,
                     patch: dict[str, Any]) -> dict[str, Any]:
        return self._raw(self.custom.patch_namespaced_custom_object, group, version, namespace, plural, name, patch,
                         _content_type=MERGE)

    def put_custom(self, group: str, version: str, namespace: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create the object, or replace the one that is there (keeping its status)."""
        try:
            return self.create_custom(group, version, namespace, plural, body)
        except kube.ClusterError as exc:
            if exc.status != 409:
                raise
        name = body["metadata"]["name"]
        existing = self.get_custom(group, version, namespace, plural, name) or {"metadata": {}}
        body = {**body, "metadata": {**body["metadata"], "resourceVersion": existing["metadata"].get("resourceVersion")}}
        if "status" in existing:
            body["status"] = existing["status"]
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
