"""The resource types a simulated cluster serves, by Kubernetes version.

Which group versions exist depends on the cluster's version (PodSecurityPolicy
went away in 1.25, policy/v1 arrived in 1.21, apiextensions/v1 in 1.16), so
discovery, routing and OpenAPI are all derived from this one table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

FieldGetter = Callable[[dict[str, Any]], tuple[str, ...]]


@dataclass(frozen=True)
class Subresource:
    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str | None = None  # set when the subresource's kind is in another group (Eviction)
    version: str | None = None


@dataclass(frozen=True)
class ResourceType:
    """One REST resource (e.g. `deployments` in group `apps`)."""

    group: str
    versions: tuple[str, ...]  # served versions, storage version first
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[Subresource, ...] = ()
    field_names: tuple[str, ...] = ()  # extra field selectors beyond metadata.name/namespace
    field_getter: FieldGetter | None = None
    min_minor: int = 0
    max_minor: int = 999
    custom: bool = False  # defined by a CRD
    printer_columns: tuple[dict[str, Any], ...] = ()  # CRD additionalPrinterColumns
    has_status: bool = True
    version_ranges: tuple[tuple[str, int, int], ...] = field(default=())  # (version, min, max)

    @property
    def key(self) -> str:
        """Storage key, independent of the served version (like etcd's /registry/<key>)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def served_versions(self, minor: int) -> list[str]:
        if not self.version_ranges:
            return list(self.versions)
        return [v for v, lo, hi in self.version_ranges if lo <= minor <= hi]

    def subresource(self, name: str) -> Subresource | None:
        for s in self.subresources:
            if s.name == name:
                return s
        return None


def _g(obj: dict[str, Any], *path: str) -> str:
    cur: Any = obj
    for p in path:
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(p)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def _pod_fields(o: dict[str, Any]) -> tuple[str, ...]:
    return (
        _g(o, "spec", "nodeName"),
        _g(o, "spec", "restartPolicy"),
        _g(o, "spec", "schedulerName"),
        _g(o, "spec", "serviceAccountName"),
        _g(o, "status", "phase"),
        _g(o, "status", "podIP"),
        _g(o, "status", "nominatedNodeName"),
    )


def _node_fields(o: dict[str, Any]) -> tuple[str, ...]:
    """spec.unschedulable (selectable) plus, for the node lifecycle controller,
    the Ready status and the lifecycle taints, so it need not decode nodes."""
    ready = "Unknown"
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            ready = c.get("status", "Unknown")
    taints = ",".join(sorted(f"{t.get('key')}:{t.get('effect')}" for t in (o.get("spec") or {}).get("taints") or []
                             if t.get("key") in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")))
    return (_g(o, "spec", "unschedulable") or "false", ready, taints)


def _event_fields(o: dict[str, Any]) -> tuple[str, ...]:
    return (
        _g(o, "involvedObject", "kind"),
        _g(o, "involvedObject", "namespace"),
        _g(o, "involvedObject", "name"),
        _g(o, "involvedObject", "uid"),
        _g(o, "involvedObject", "apiVersion"),
        _g(o, "involvedObject", "resourceVersion"),
        _g(o, "involvedObject", "fieldPath"),
        _g(o, "reason"),
        _g(o, "source", "component"),
        _g(o, "type"),
    )


_STATUS = Subresource("status", "", ("get", "patch", "update"))


def _scale(group: str = "autoscaling", version: str = "v1") -> Subresource:
    return Subresource("scale", "Scale", ("get", "patch", "update"), group, version)


def builtin_types() -> list[ResourceType]:
    """Built-in resources, with the Kubernetes minor versions that served them."""
    core = [
        ResourceType("", ("v1",), "namespaces", "namespace", "Namespace", False, ("ns",),
                     verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
                     subresources=(_STATUS, Subresource("finalize", "Namespace", ("update",))),
                     field_names=("status.phase",), field_getter=lambda o: (_g(o, "status", "phase"),)),
        ResourceType("", ("v1",), "nodes", "node", "Node", False, ("no",),
                     subresources=(_STATUS, Subresource("proxy", "NodeProxyOptions", ("create", "delete", "get", "patch", "update"))),
                     field_names=("spec.unschedulable",), field_getter=_node_fields),
        ResourceType("", ("v1",), "pods", "pod", "Pod", True, ("po",), ("all",),
                     subresources=(
                         Subresource("binding", "Binding", ("create",)),
                         Subresource("eviction", "Eviction", ("create",), "policy", "v1"),
                         Subresource("log", "Pod", ("get",)),
                         _STATUS,
                     ),
                     field_names=("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                                  "spec.serviceAccountName", "status.phase", "status.podIP",
                                  "status.nominatedNodeName"),
                     field_getter=_pod_fields),
        ResourceType("", ("v1",), "bindings", "binding", "Binding", True, verbs=("create",), has_status=False),
        ResourceType("", ("v1",), "services", "service", "Service", True, ("svc",), ("all",),
                     verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
                     subresources=(_STATUS,)),
        ResourceType("", ("v1",), "componentstatuses", "componentstatus", "ComponentStatus", False, ("cs",),
                     verbs=("get", "list"), has_status=False),
        ResourceType("", ("v1",), "endpoints", "endpoints", "Endpoints", True, ("ep",), has_status=False),
        ResourceType("", ("v1",), "configmaps", "configmap", "ConfigMap", True, ("cm",), has_status=False),
        ResourceType("", ("v1",), "secrets", "secret", "Secret", True, has_status=False,
                     field_names=("type",), field_getter=lambda o: (_g(o, "type"),)),
        ResourceType("", ("v1",), "serviceaccounts", "serviceaccount", "ServiceAccount", True, ("sa",),
                     has_status=False),
        ResourceType("", ("v1",), "events", "event", "Event", True, ("ev",), has_status=False,
                     field_names=("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                                  "involvedObject.uid", "involvedObject.apiVersion",
                                  "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                                  "source", "type"),
                     field_getter=_event_fields),
    ]
    apps = [
        ResourceType("apps", ("v1",), "deployments", "deployment", "Deployment", True, ("deploy",), ("all",),
                     subresources=(_scale(), _STATUS)),
        ResourceType("apps", ("v1",), "replicasets", "replicaset", "ReplicaSet", True, ("rs",), ("all",),
                     subresources=(_scale(), _STATUS),
                     field_names=("status.replicas",), field_getter=lambda o: (_g(o, "status", "replicas"),)),
        ResourceType("apps", ("v1",), "daemonsets", "daemonset", "DaemonSet", True, ("ds",), ("all",),
                     subresources=(_STATUS,)),
        ResourceType("apps", ("v1",), "statefulsets", "statefulset", "StatefulSet", True, ("sts",), ("all",),
                     subresources=(_scale(), _STATUS)),
        ResourceType("apps", ("v1",), "controllerrevisions", "controllerrevision", "ControllerRevision", True,
                     has_status=False),
    ]
    other = [
        ResourceType("batch", ("v1",), "jobs", "job", "Job", True, (), ("all",), subresources=(_STATUS,),
                     field_names=("status.successful",),
                     field_getter=lambda o: (_g(o, "status", "succeeded") or "0",)),
        ResourceType("policy", ("v1", "v1beta1"), "poddisruptionbudgets", "poddisruptionbudget",
                     "PodDisruptionBudget", True, ("pdb",), subresources=(_STATUS,),
                     version_ranges=(("v1", 21, 999), ("v1beta1", 0, 24))),
        ResourceType("policy", ("v1beta1",), "podsecuritypolicies", "podsecuritypolicy", "PodSecurityPolicy",
                     False, ("psp",), has_status=False, max_minor=24),
        ResourceType("networking.k8s.io", ("v1",), "networkpolicies", "networkpolicy", "NetworkPolicy", True,
                     ("netpol",), has_status=False),
        ResourceType("coordination.k8s.io", ("v1",), "leases", "lease", "Lease", True, has_status=False,
                     min_minor=14),
        ResourceType("apiextensions.k8s.io", ("v1", "v1beta1"), "customresourcedefinitions",
                     "customresourcedefinition", "CustomResourceDefinition", False, ("crd", "crds"),
                     ("api-extensions",), subresources=(_STATUS,),
                     version_ranges=(("v1", 16, 999), ("v1beta1", 0, 21))),
    ]
    rbac_g = "rbac.authorization.k8s.io"
    rbac = [
        ResourceType(rbac_g, ("v1",), "roles", "role", "Role", True, has_status=False),
        ResourceType(rbac_g, ("v1",), "rolebindings", "rolebinding", "RoleBinding", True, has_status=False),
        ResourceType(rbac_g, ("v1",), "clusterroles", "clusterrole", "ClusterRole", False, has_status=False),
        ResourceType(rbac_g, ("v1",), "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", False,
                     has_status=False),
    ]
    authz_g, authn_g, create = "authorization.k8s.io", "authentication.k8s.io", ("create",)
    reviews = [  # answered by authz.py, never stored
        ResourceType(authz_g, ("v1", "v1beta1"), "selfsubjectaccessreviews", "selfsubjectaccessreview", "SelfSubjectAccessReview", False,
                     verbs=create, has_status=False, version_ranges=(("v1", 0, 999), ("v1beta1", 0, 21))),
        ResourceType(authz_g, ("v1", "v1beta1"), "selfsubjectrulesreviews", "selfsubjectrulesreview", "SelfSubjectRulesReview", False,
                     verbs=create, has_status=False, version_ranges=(("v1", 0, 999), ("v1beta1", 0, 21))),
        ResourceType(authz_g, ("v1", "v1beta1"), "subjectaccessreviews", "subjectaccessreview", "SubjectAccessReview", False,
                     verbs=create, has_status=False, version_ranges=(("v1", 0, 999), ("v1beta1", 0, 21))),
        ResourceType(authz_g, ("v1", "v1beta1"), "localsubjectaccessreviews", "localsubjectaccessreview", "LocalSubjectAccessReview", True,
                     verbs=create, has_status=False, version_ranges=(("v1", 0, 999), ("v1beta1", 0, 21))),
        ResourceType(authn_g, ("v1", "v1beta1"), "tokenreviews", "tokenreview", "TokenReview", False,
                     verbs=create, has_status=False, version_ranges=(("v1", 0, 999), ("v1beta1", 0, 21))),
        ResourceType(authn_g, ("v1", "v1beta1"), "selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview", False,
                     verbs=create, has_status=False, version_ranges=(("v1", 28, 999), ("v1beta1", 27, 999))),
    ]
    return core + apps + other + rbac + reviews


BUILTIN: list[ResourceType] = builtin_types()

# Preferred order of groups in /apis, as the real server lists them.
GROUP_ORDER = (
    "apiregistration.k8s.io", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io",
    "autoscaling", "batch", "certificates.k8s.io", "networking.k8s.io", "policy", "rbac.authorization.k8s.io",
    "storage.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io", "scheduling.k8s.io",
    "coordination.k8s.io", "node.k8s.io",
)


_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(.*)$")


def parse_version(text: str) -> tuple[int, int, int, str]:
    """`v1.17.4+k3s1` -> (1, 17, 4, '+k3s1')."""
    m = _VERSION_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a Kubernetes version: {text!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)


def version_key(text: str) -> tuple[int, int, int, str]:
    try:
        return parse_version(text)
    except ValueError:
        return (0, 0, 0, text)


def group_version_priority(group: str, version: str) -> tuple[int, int, int]:
    """Sort key for versions like the real server (GA > beta > alpha, then by number)."""
    m = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", version)
    if not m:
        return (3, 0, 0)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0))


def crd_resource_type(crd: dict[str, Any]) -> ResourceType | None:
    """A ResourceType for a CustomResourceDefinition (v1 or v1beta1 shape)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group")
    plural = names.get("plural")
    kind = names.get("kind")
    if not group or not plural or not kind:
        return None
    versions: list[str] = []
    storage = None
    columns: tuple[dict[str, Any], ...] = ()
    has_status = False
    has_scale: dict[str, Any] | None = None
    vlist = spec.get("versions") or []
    if vlist:
        for v in vlist:
            if v.get("served", True):
                versions.append(v["name"])
            if v.get("storage"):
                storage = v["name"]
                columns = tuple(v.get("additionalPrinterColumns") or spec.get("additionalPrinterColumns") or ())
                sub = v.get("subresources") or spec.get("subresources") or {}
                has_status = "status" in sub
                has_scale = sub.get("scale")
    elif spec.get("version"):
        versions = [spec["version"]]
        storage = spec["version"]
        columns = tuple(spec.get("additionalPrinterColumns") or ())
        sub = spec.get("subresources") or {}
        has_status = "status" in sub
        has_scale = sub.get("scale")
    if not versions:
        return None
    versions.sort(key=lambda v: group_version_priority(group, v))
    if storage in versions:
        versions.remove(storage)
        versions.insert(0, storage)
    subs: list[Subresource] = []
    if has_status:
        subs.append(_STATUS)
    if has_scale is not None:
        subs.append(_scale())
    return ResourceType(
        group, tuple(versions), plural, names.get("singular") or kind.lower(), kind,
        (spec.get("scope") or "Namespaced") == "Namespaced",
        tuple(names.get("shortNames") or ()), tuple(names.get("categories") or ()),
        subresources=tuple(subs), custom=True, printer_columns=columns, has_status=has_status,
    )
