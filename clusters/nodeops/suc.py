"""Making sure system-upgrade-controller runs on a cluster before any node operation.

``ensure_installed`` looks for the Plan CRD (``plans.upgrade.cattle.io``) and an available
Deployment ``system-upgrade/system-upgrade-controller``. When either is missing it creates the
objects of ``manifests/system-upgrade-controller.yaml`` (those already there are left alone),
then waits for the CRD to be served and the Deployment to be available. When it cannot — the
credentials may not create an object, the controller never comes up — it raises
``ControllerMissing`` naming what is missing and why.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from clusters import kube
from clusters.nodeops.api import ClusterApi
from clusters.nodeops.images import SUC_IMAGE

NAMESPACE = "system-upgrade"
DEPLOYMENT = "system-upgrade-controller"
CRD = "plans.upgrade.cattle.io"
MANIFEST = Path(__file__).with_name("manifests") / "system-upgrade-controller.yaml"
FIELD_MANAGER = "corral"
POLL = 0.25


class ControllerMissing(Exception):
    """system-upgrade-controller is not usable on the cluster and Corral could not install it."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@cache
def manifest_objects() -> tuple[dict[str, Any], ...]:
    """The pinned manifest's objects, in creation order, with the pinned controller image."""
    objects = []
    for doc in yaml.safe_load_all(MANIFEST.read_text()):
        if not doc:
            continue
        for container in (((doc.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []:
            if container.get("image") == "SUC_IMAGE":
                container["image"] = SUC_IMAGE
        objects.append(doc)
    return tuple(objects)


def collection_path(obj: dict[str, Any]) -> str:
    """Where an object of this kind is created: ``/apis/apps/v1/namespaces/x/deployments``."""
    api_version = obj["apiVersion"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    namespace = (obj.get("metadata") or {}).get("namespace")
    plural = obj["kind"].lower() + "s"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def object_path(obj: dict[str, Any]) -> str:
    return f"{collection_path(obj)}/{obj['metadata']['name']}"


def crd_v1beta1(crd: dict[str, Any]) -> dict[str, Any]:
    """The CRD in apiextensions.k8s.io/v1beta1 form, for clusters older than 1.16."""
    old = copy.deepcopy(crd)
    old["apiVersion"] = "apiextensions.k8s.io/v1beta1"
    version = old["spec"].pop("versions")[0]
    old["spec"]["version"] = version["name"]
    old["spec"]["versions"] = [{"name": version["name"], "served": True, "storage": True}]
    old["spec"]["subresources"] = version.get("subresources") or {}
    old["spec"]["additionalPrinterColumns"] = [
        {"name": c["name"], "type": c["type"], "JSONPath": c["jsonPath"]}
        for c in version.get("additionalPrinterColumns") or []]
    old["spec"]["preserveUnknownFields"] = True  # v1beta1 keeps unknown fields; no schema needed
    return old


def _apiextensions_version(api: ClusterApi) -> str:
    group = api.exists("/apis/apiextensions.k8s.io") or {}
    served = {v.get("version") for v in group.get("versions") or []}
    return "v1" if "v1" in served or not served else "v1beta1"


def _crd_path(version: str) -> str:
    return f"/apis/apiextensions.k8s.io/{version}/customresourcedefinitions/{CRD}"


def _deployment_path() -> str:
    return f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{DEPLOYMENT}"


def deployment_available(deployment: dict[str, Any] | None) -> bool:
    if not deployment:
        return False
    status = deployment.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Available":
            return cond.get("status") == "True" and (status.get("availableReplicas") or 0) >= 1
    return (status.get("availableReplicas") or 0) >= 1


def _crd_established(crd: dict[str, Any] | None) -> bool:
    if not crd:
        return False
    conditions = (crd.get("status") or {}).get("conditions")
    if not conditions:
        return True  # a server that reports no conditions serves the CRD once it exists
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def missing(api: ClusterApi) -> list[str]:
    """What is missing for system-upgrade-controller to run Plans, in words ([] when it is ready)."""
    version = _apiextensions_version(api)
    out = []
    if not _crd_established(api.exists(_crd_path(version))):
        out.append(f"CustomResourceDefinition {CRD}")
    deployment = api.exists(_deployment_path())
    if deployment is None:
        out.append(f"Deployment {NAMESPACE}/{DEPLOYMENT}")
    elif not deployment_available(deployment):
        out.append(f"an available Deployment {NAMESPACE}/{DEPLOYMENT} ({_deployment_state(deployment)})")
    return out


def _deployment_state(deployment: dict[str, Any] | None) -> str:
    if not deployment:
        return "not created"
    status = deployment.get("status") or {}
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    text = f"{status.get('availableReplicas') or 0}/{wanted} replicas available"
    reasons = [c.get("message") for c in status.get("conditions") or [] if c.get("status") != "True" and c.get("message")]
    return text + (f": {'; '.join(reasons)}" if reasons else "")


def ensure_installed(api: ClusterApi, *, log: Callable[[str], None] | None = None,
                     timeout: float | None = None) -> bool:
    """Install system-upgrade-controller when missing and wait for it; True if Corral installed something.

    Raises ControllerMissing when it cannot (forbidden, or not available within ``timeout``).
    """
    log = log or (lambda message: None)
    timeout = float(settings.SUC_INSTALL_TIMEOUT if timeout is None else timeout)
    gaps = missing(api)
    if not gaps:
        return False
    log(f"system-upgrade-controller is not ready on this cluster (missing: {', '.join(gaps)}); installing it "
        f"({SUC_IMAGE})")
    version = _apiextensions_version(api)
    created = []
    for obj in manifest_objects():
        if obj["kind"] == "CustomResourceDefinition" and version != "v1":
            obj = crd_v1beta1(obj)
        what = f"{obj['kind']} {obj['metadata'].get('namespace', '') + '/' if obj['metadata'].get('namespace') else ''}" \
               f"{obj['metadata']['name']}"
        try:
            api.request("POST", collection_path(obj), obj, query={"fieldManager": FIELD_MANAGER})
            created.append(what)
        except kube.ClusterError as exc:
            if exc.status == 409:
                continue  # already there: left as it is
            if exc.status == 403:
                raise ControllerMissing(
                    f"system-upgrade-controller is not installed (missing: {', '.join(gaps)}) and Corral may not "
                    f"install it: creating {what} was forbidden ({exc.reason}). Install "
                    f"clusters/nodeops/manifests/system-upgrade-controller.yaml on the cluster, or give Corral's "
                    "credentials the right to create it.") from None
            raise ControllerMissing(f"installing system-upgrade-controller failed at {what}: {exc.reason}") from None
    if created:
        log(f"Created {', '.join(created)}")
    deadline = time.monotonic() + timeout
    while True:
        gaps = missing(api)
        if not gaps:
            log("system-upgrade-controller is available")
            return True
        if time.monotonic() > deadline:
            raise ControllerMissing(
                f"system-upgrade-controller did not become ready within {int(timeout)} s after Corral installed it; "
                f"missing: {', '.join(gaps)}")
        time.sleep(POLL)
