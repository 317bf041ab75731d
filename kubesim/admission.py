"""Defaulting and validation on create/update, per kind.

Only what clients observe: defaults they read back (imagePullPolicy, strategy,
tolerations the DefaultTolerationSeconds plugin adds) and the 422s they get for
objects the real server rejects.
"""

from __future__ import annotations

import re
from typing import Any

from . import errors
from .util import dig

_DNS1123_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

LABEL_NAMED = {"Namespace", "Service"}  # kinds whose names must be DNS-1123 labels


def _default_container(c: dict[str, Any]) -> None:
    image = c.get("image", "")
    if "imagePullPolicy" not in c:
        tag = image.rsplit("/", 1)[-1]
        c["imagePullPolicy"] = "Always" if (":" not in tag or tag.endswith(":latest")) and "@" not in tag else "IfNotPresent"
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")


def default_pod_spec(spec: dict[str, Any], in_template: bool = False) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    if "serviceAccountName" not in spec and "serviceAccount" in spec:
        spec["serviceAccountName"] = spec["serviceAccount"]
    for c in spec.get("containers") or []:
        _default_container(c)
    for c in spec.get("initContainers") or []:
        _default_container(c)
    if not in_template:
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("priority", 0)
        spec.setdefault("enableServiceLinks", True)
        tols = spec.setdefault("tolerations", [])
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if not any(t.get("key") == key and t.get("effect") in (None, "", "NoExecute") for t in tols) and not any(
                t.get("operator") == "Exists" and not t.get("key") for t in tols
            ):
                tols.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})


def _default_template(obj: dict[str, Any]) -> None:
    tmpl = dig(obj, "spec", "template")
    if isinstance(tmpl, dict):
        tmpl.setdefault("metadata", {})
        default_pod_spec(tmpl.setdefault("spec", {}), in_template=True)


def apply_defaults(kind: str, obj: dict[str, Any], minor: int) -> None:
    """Set the fields the real API server defaults for `kind`."""
    spec = obj.get("spec")
    if kind == "Pod":
        default_pod_spec(obj.setdefault("spec", {}))
        st = obj.setdefault("status", {})
        st.setdefault("phase", "Pending")
        st.setdefault("qosClass", _qos(obj["spec"]))
    elif kind == "Deployment" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strat = spec.setdefault("strategy", {"type": "RollingUpdate"})
        if strat.get("type", "RollingUpdate") == "RollingUpdate":
            strat["type"] = "RollingUpdate"
            ru = strat.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
        _default_template(obj)
    elif kind in ("ReplicaSet", "StatefulSet") and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        if kind == "StatefulSet":
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        _default_template(obj)
    elif kind == "DaemonSet" and isinstance(spec, dict):
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}})
        _default_template(obj)
    elif kind == "Job" and isinstance(spec, dict):
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 6)
        _default_template(obj)
    elif kind == "Service":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for p in spec.get("ports") or []:
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
        obj.setdefault("status", {"loadBalancer": {}})
    elif kind == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
    elif kind == "Node":
        obj.setdefault("spec", {})
    elif kind == "PodDisruptionBudget":
        obj.setdefault("status", {})
    elif kind == "CustomResourceDefinition" and isinstance(spec, dict):
        spec.setdefault("scope", "Namespaced")
        names = spec.setdefault("names", {})
        if names.get("kind"):
            names.setdefault("singular", names["kind"].lower())
            names.setdefault("listKind", names["kind"] + "List")


def _qos(spec: dict[str, Any]) -> str:
    reqs = [c.get("resources") or {} for c in spec.get("containers") or []]
    if not any(r.get("requests") or r.get("limits") for r in reqs):
        return "BestEffort"
    guaranteed = all(
        r.get("limits") and all(k in (r.get("limits") or {}) for k in ("cpu", "memory"))
        and (not r.get("requests") or r.get("requests") == r.get("limits"))
        for r in reqs
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _check_containers(spec: Any, path: str, causes: list[tuple[str, str, str]]) -> None:
    if not isinstance(spec, dict):
        causes.append(("FieldValueRequired", path, "Required value"))
        return
    containers = spec.get("containers")
    if not containers:
        causes.append(("FieldValueRequired", f"{path}.containers", "Required value"))
        return
    seen: set[str] = set()
    for i, c in enumerate(containers):
        if not c.get("name"):
            causes.append(("FieldValueRequired", f"{path}.containers[{i}].name", "Required value"))
        elif c["name"] in seen:
            causes.append(("FieldValueDuplicate", f"{path}.containers[{i}].name", f'Duplicate value: "{c["name"]}"'))
        else:
            seen.add(c["name"])
        if not c.get("image"):
            causes.append(("FieldValueRequired", f"{path}.containers[{i}].image", "Required value"))
    rp = spec.get("restartPolicy")
    if rp not in (None, "Always", "OnFailure", "Never"):
        causes.append(("FieldValueNotSupported", f"{path}.restartPolicy",
                       f'Unsupported value: "{rp}": supported values: "Always", "OnFailure", "Never"'))


def _check_selector(obj: dict[str, Any], causes: list[tuple[str, str, str]]) -> None:
    sel = dig(obj, "spec", "selector")
    if not sel or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        causes.append(("FieldValueRequired", "spec.selector", "Required value"))
        return
    labels = dig(obj, "spec", "template", "metadata", "labels", default={}) or {}
    from .selectors import selector_from_match

    if not selector_from_match(sel)(labels):
        shown = "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items())) + "}"
        causes.append(("FieldValueInvalid", "spec.template.metadata.labels",
                       f"Invalid value: {shown}: `selector` does not match template `labels`"))


def validate(kind: str, group: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Raise 422 Invalid for objects the real server refuses."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    causes: list[tuple[str, str, str]] = []
    pattern = _DNS1123_LABEL if kind in LABEL_NAMED else _DNS1123_SUB
    if name and not pattern.match(name) and kind not in ("Event",) and not kind.endswith("Binding") and not kind.endswith("Role"):
        what = "a lowercase RFC 1123 label" if kind in LABEL_NAMED else "a lowercase RFC 1123 subdomain"
        causes.append(("FieldValueInvalid", "metadata.name",
                       f"Invalid value: \"{name}\": {what} must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"))
    if kind == "Pod":
        _check_containers(obj.get("spec"), "spec", causes)
        if old is not None:
            old_node = dig(old, "spec", "nodeName")
            if old_node and dig(obj, "spec", "nodeName") != old_node:
                causes.append(("FieldValueForbidden", "spec", "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations` (only additions to existing tolerations)"))
    elif kind in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet"):
        _check_selector(obj, causes)
        _check_containers(dig(obj, "spec", "template", "spec"), "spec.template.spec", causes)
        reps = dig(obj, "spec", "replicas")
        if isinstance(reps, int) and reps < 0:
            causes.append(("FieldValueInvalid", "spec.replicas",
                           f"Invalid value: {reps}: must be greater than or equal to 0"))
        if old is not None and dig(old, "spec", "selector") != dig(obj, "spec", "selector"):
            causes.append(("FieldValueInvalid", "spec.selector", "Invalid value: field is immutable"))
    elif kind == "Job":
        _check_containers(dig(obj, "spec", "template", "spec"), "spec.template.spec", causes)
        rp = dig(obj, "spec", "template", "spec", "restartPolicy")
        if rp not in ("Never", "OnFailure"):
            causes.append(("FieldValueNotSupported", "spec.template.spec.restartPolicy",
                           f'Unsupported value: "{rp or "Always"}": supported values: "OnFailure", "Never"'))
    elif kind == "PodDisruptionBudget":
        spec = obj.get("spec") or {}
        if "minAvailable" in spec and "maxUnavailable" in spec:
            causes.append(("FieldValueInvalid", "spec",
                           "Invalid value: ...: minAvailable and maxUnavailable cannot be both set"))
    elif kind == "CustomResourceDefinition":
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        if not spec.get("group"):
            causes.append(("FieldValueRequired", "spec.group", "Required value"))
        if not names.get("plural"):
            causes.append(("FieldValueRequired", "spec.names.plural", "Required value"))
        if not names.get("kind"):
            causes.append(("FieldValueRequired", "spec.names.kind", "Required value"))
        if spec.get("group") and names.get("plural") and name != f"{names['plural']}.{spec['group']}":
            causes.append(("FieldValueInvalid", "metadata.name",
                           f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
    if causes:
        raise errors.invalid(kind, group, name, causes)
