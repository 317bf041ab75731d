"""Decoding `application/vnd.kubernetes.protobuf` request bodies.

kubectl 1.33's typed clients (`kubectl create configmap|secret|deployment|...`,
`kubectl run`) send built-in objects as protobuf: the magic `k8s\\0`, then a
`runtime.Unknown` envelope holding the type and the object's bytes.  The
schemas below carry the field numbers of k8s.io/api's generated.proto for the
kinds those commands send; unknown fields are skipped, as protobuf intends.
The result is the JSON form the rest of the server works on.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from .errors import bad_request

MAGIC = b"k8s\x00"

# field spec: number -> (json name, kind, message type or None)
#   kinds: s=string, b=bytes, i=int, bool, m=message, rs=repeated string, rm=repeated message,
#          ms=map<string,string>, mb=map<string,bytes>, mm=map<string,message>
F = dict[int, tuple[str, str, str | None]]

SCHEMAS: dict[str, F] = {
    "Time": {1: ("seconds", "i", None), 2: ("nanos", "i", None)},
    "IntOrString": {1: ("type", "i", None), 2: ("intVal", "i", None), 3: ("strVal", "s", None)},
    "Quantity": {1: ("string", "s", None)},
    "ObjectMeta": {1: ("name", "s", None), 2: ("generateName", "s", None), 3: ("namespace", "s", None),
                   4: ("selfLink", "s", None), 5: ("uid", "s", None), 6: ("resourceVersion", "s", None),
                   7: ("generation", "i", None), 8: ("creationTimestamp", "m", "Time"),
                   9: ("deletionTimestamp", "m", "Time"), 10: ("deletionGracePeriodSeconds", "i", None),
                   11: ("labels", "ms", None), 12: ("annotations", "ms", None),
                   13: ("ownerReferences", "rm", "OwnerReference"), 14: ("finalizers", "rs", None)},
    "OwnerReference": {1: ("kind", "s", None), 3: ("name", "s", None), 4: ("uid", "s", None),
                       5: ("apiVersion", "s", None), 6: ("controller", "bool", None),
                       7: ("blockOwnerDeletion", "bool", None)},
    "LabelSelector": {1: ("matchLabels", "ms", None), 2: ("matchExpressions", "rm", "LabelSelectorRequirement")},
    "LabelSelectorRequirement": {1: ("key", "s", None), 2: ("operator", "s", None), 3: ("values", "rs", None)},
    "DeleteOptions": {1: ("gracePeriodSeconds", "i", None), 2: ("preconditions", "m", "Preconditions"),
                      3: ("orphanDependents", "bool", None), 4: ("propagationPolicy", "s", None),
                      5: ("dryRun", "rs", None)},
    "Preconditions": {1: ("uid", "s", None), 2: ("resourceVersion", "s", None)},
    # core/v1
    "ConfigMap": {1: ("metadata", "m", "ObjectMeta"), 2: ("data", "ms", None), 3: ("binaryData", "mb", None),
                  4: ("immutable", "bool", None)},
    "Secret": {1: ("metadata", "m", "ObjectMeta"), 2: ("data", "mb", None), 3: ("type", "s", None),
               4: ("stringData", "ms", None), 5: ("immutable", "bool", None)},
    "Namespace": {1: ("metadata", "m", "ObjectMeta"), 2: ("spec", "m", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "rs", None)},
    "ServiceAccount": {1: ("metadata", "m", "ObjectMeta"), 2: ("secrets", "rm", "ObjectReference"),
                       3: ("imagePullSecrets", "rm", "LocalObjectReference"),
                       4: ("automountServiceAccountToken", "bool", None)},
    "ObjectReference": {1: ("kind", "s", None), 2: ("namespace", "s", None), 3: ("name", "s", None),
                        4: ("uid", "s", None), 5: ("apiVersion", "s", None), 6: ("resourceVersion", "s", None),
                        7: ("fieldPath", "s", None)},
    "LocalObjectReference": {1: ("name", "s", None)},
    "Pod": {1: ("metadata", "m", "ObjectMeta"), 2: ("spec", "m", "PodSpec")},
    "PodTemplateSpec": {1: ("metadata", "m", "ObjectMeta"), 2: ("spec", "m", "PodSpec")},
    "PodSpec": {2: ("containers", "rm", "Container"), 3: ("restartPolicy", "s", None),
                4: ("terminationGracePeriodSeconds", "i", None), 5: ("activeDeadlineSeconds", "i", None),
                6: ("dnsPolicy", "s", None), 7: ("nodeSelector", "ms", None), 8: ("serviceAccountName", "s", None),
                9: ("serviceAccount", "s", None), 10: ("nodeName", "s", None), 11: ("hostNetwork", "bool", None),
                12: ("hostPID", "bool", None), 13: ("hostIPC", "bool", None), 14: ("securityContext", "m", "Empty"),
                15: ("imagePullSecrets", "rm", "LocalObjectReference"), 16: ("hostname", "s", None),
                17: ("subdomain", "s", None), 19: ("schedulerName", "s", None),
                20: ("initContainers", "rm", "Container"), 21: ("automountServiceAccountToken", "bool", None),
                22: ("tolerations", "rm", "Toleration"), 24: ("priorityClassName", "s", None),
                25: ("priority", "i", None)},
    "Empty": {},
    "Container": {1: ("name", "s", None), 2: ("image", "s", None), 3: ("command", "rs", None), 4: ("args", "rs", None),
                  5: ("workingDir", "s", None), 6: ("ports", "rm", "ContainerPort"), 7: ("env", "rm", "EnvVar"),
                  8: ("resources", "m", "ResourceRequirements"), 13: ("terminationMessagePath", "s", None),
                  14: ("imagePullPolicy", "s", None), 16: ("stdin", "bool", None), 17: ("stdinOnce", "bool", None),
                  18: ("tty", "bool", None), 20: ("terminationMessagePolicy", "s", None)},
    "ContainerPort": {1: ("name", "s", None), 2: ("hostPort", "i", None), 3: ("containerPort", "i", None),
                      4: ("protocol", "s", None), 5: ("hostIP", "s", None)},
    "EnvVar": {1: ("name", "s", None), 2: ("value", "s", None)},
    "ResourceRequirements": {1: ("limits", "mm", "Quantity"), 2: ("requests", "mm", "Quantity")},
    "Toleration": {1: ("key", "s", None), 2: ("operator", "s", None), 3: ("value", "s", None),
                   4: ("effect", "s", None), 5: ("tolerationSeconds", "i", None)},
    "Service": {1: ("metadata", "m", "ObjectMeta"), 2: ("spec", "m", "ServiceSpec")},
    "ServiceSpec": {1: ("ports", "rm", "ServicePort"), 2: ("selector", "ms", None), 3: ("clusterIP", "s", None),
                    4: ("type", "s", None), 5: ("externalIPs", "rs", None), 7: ("sessionAffinity", "s", None),
                    10: ("externalName", "s", None)},
    "ServicePort": {1: ("name", "s", None), 2: ("protocol", "s", None), 3: ("port", "i", None),
                    4: ("targetPort", "m", "IntOrString"), 5: ("nodePort", "i", None)},
    # apps/v1, batch/v1, policy, rbac
    "Deployment": {1: ("metadata", "m", "ObjectMeta"), 2: ("spec", "m", "DeploymentSpec")},
    "DeploymentSpec": {1: ("replicas", "i", None), 2: ("selector", "m", "LabelSelector"),
                       3: ("template", "m", "PodTemplateSpec"), 4: ("strategy", "m", "DeploymentStrategy"),
                       5: ("minReadySeconds", "i", None), 6: ("revisionHistoryLimit", "i", None),
                       7: ("paused", "bool", None), 9: ("progressDeadlineSeconds", "i", None)},
    "DeploymentStrategy": {1: ("type", "s", None), 2: ("rollingUpdate", "m", "RollingUpdateDeployment")},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "m", "IntOrString"), 2: ("maxSurge", "m", "IntOrString")},
    "Job": {1: ("metadata", "m", "ObjectMeta"), 2: ("spec", "m", "JobSpec")},
    "JobSpec": {1: ("parallelism", "i", None), 2: ("completions", "i", None), 3: ("activeDeadlineSeconds", "i", None),
                4: ("selector", "m", "LabelSelector"), 5: ("manualSelector", "bool", None),
                6: ("template", "m", "PodTemplateSpec"), 7: ("backoffLimit", "i", None)},
    "PodDisruptionBudget": {1: ("metadata", "m", "ObjectMeta"), 2: ("spec", "m", "PodDisruptionBudgetSpec")},
    "PodDisruptionBudgetSpec": {1: ("minAvailable", "m", "IntOrString"), 2: ("selector", "m", "LabelSelector"),
                                3: ("maxUnavailable", "m", "IntOrString")},
    "Eviction": {1: ("metadata", "m", "ObjectMeta"), 2: ("deleteOptions", "m", "DeleteOptions")},
    "Role": {1: ("metadata", "m", "ObjectMeta"), 2: ("rules", "rm", "PolicyRule")},
    "ClusterRole": {1: ("metadata", "m", "ObjectMeta"), 2: ("rules", "rm", "PolicyRule")},
    "PolicyRule": {1: ("verbs", "rs", None), 2: ("apiGroups", "rs", None), 3: ("resources", "rs", None),
                   4: ("resourceNames", "rs", None), 5: ("nonResourceURLs", "rs", None)},
    "RoleBinding": {1: ("metadata", "m", "ObjectMeta"), 2: ("subjects", "rm", "Subject"), 3: ("roleRef", "m", "RoleRef")},
    "ClusterRoleBinding": {1: ("metadata", "m", "ObjectMeta"), 2: ("subjects", "rm", "Subject"),
                           3: ("roleRef", "m", "RoleRef")},
    "Subject": {1: ("kind", "s", None), 2: ("apiGroup", "s", None), 3: ("name", "s", None), 4: ("namespace", "s", None)},
    "RoleRef": {1: ("apiGroup", "s", None), 2: ("kind", "s", None), 3: ("name", "s", None)},
    # authorization.k8s.io/v1 and authentication.k8s.io/v1 (kubectl auth can-i / whoami; authz.py answers)
    "SelfSubjectAccessReview": {1: ("metadata", "m", "ObjectMeta"), 2: ("spec", "m", "SubjectAccessReviewSpec")},
    "SubjectAccessReview": {1: ("metadata", "m", "ObjectMeta"), 2: ("spec", "m", "SubjectAccessReviewSpec")},
    "LocalSubjectAccessReview": {1: ("metadata", "m", "ObjectMeta"), 2: ("spec", "m", "SubjectAccessReviewSpec")},
    "SubjectAccessReviewSpec": {1: ("resourceAttributes", "m", "ResourceAttributes"),
                                2: ("nonResourceAttributes", "m", "NonResourceAttributes"), 3: ("user", "s", None),
                                4: ("groups", "rs", None), 6: ("uid", "s", None)},
    "ResourceAttributes": {1: ("namespace", "s", None), 2: ("verb", "s", None), 3: ("group", "s", None),
                           4: ("version", "s", None), 5: ("resource", "s", None), 6: ("subresource", "s", None),
                           7: ("name", "s", None)},
    "NonResourceAttributes": {1: ("path", "s", None), 2: ("verb", "s", None)},
    "SelfSubjectRulesReview": {1: ("metadata", "m", "ObjectMeta"), 2: ("spec", "m", "SelfSubjectRulesReviewSpec")},
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "s", None)},
    "SelfSubjectReview": {1: ("metadata", "m", "ObjectMeta")},
    "TokenReview": {1: ("metadata", "m", "ObjectMeta"), 2: ("spec", "m", "TokenReviewSpec")},
    "TokenReviewSpec": {1: ("token", "s", None), 2: ("audiences", "rs", None)},
}

# Pointer fields in Go: present means set, even when zero or false.
KEEP_ZERO = {"replicas", "terminationGracePeriodSeconds", "tolerationSeconds", "parallelism", "completions",
             "backoffLimit", "immutable", "automountServiceAccountToken", "revisionHistoryLimit",
             "progressDeadlineSeconds", "activeDeadlineSeconds", "gracePeriodSeconds", "controller",
             "blockOwnerDeletion", "deletionGracePeriodSeconds", "priority", "orphanDependents", "manualSelector",
             "port", "containerPort"}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 2:
            n, pos = _varint(buf, pos)
            val = buf[pos:pos + n]
            if len(val) != n:
                raise ValueError("truncated field")
            pos += n
        elif wt == 1:
            val = int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wt == 5:
            val = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        out.append((num, wt, val))
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _map_entry(raw: bytes, value_kind: str, value_type: str | None) -> tuple[str, Any]:
    k: str = ""
    v: Any = "" if value_kind != "mm" else None
    for num, _, val in _fields(raw):
        if num == 1:
            k = val.decode()
        elif num == 2:
            if value_kind == "ms":
                v = val.decode()
            elif value_kind == "mb":
                v = base64.b64encode(val).decode()
            else:
                v = _special(value_type or "", decode_message(val, value_type or ""))
    return k, v


def _special(type_name: str, msg: dict[str, Any]) -> Any:
    """Types whose JSON form is not an object."""
    if type_name == "Time":
        if not msg.get("seconds"):
            return None
        return datetime.fromtimestamp(msg["seconds"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if type_name == "IntOrString":
        return msg.get("strVal", "") if msg.get("type") == 1 else msg.get("intVal", 0)
    if type_name == "Quantity":
        return msg.get("string", "")
    return msg


def decode_message(buf: bytes, type_name: str) -> dict[str, Any]:
    schema = SCHEMAS.get(type_name, {})
    out: dict[str, Any] = {}
    for num, _, val in _fields(buf):
        spec = schema.get(num)
        if spec is None:
            continue
        name, kind, sub = spec
        if kind == "s":
            out[name] = val.decode()
        elif kind == "b":
            out[name] = base64.b64encode(val).decode()
        elif kind == "i":
            out[name] = _signed(val)
        elif kind == "bool":
            out[name] = bool(val)
        elif kind == "m":
            out[name] = _special(sub or "", decode_message(val, sub or ""))
        elif kind == "rs":
            out.setdefault(name, []).append(val.decode())
        elif kind == "rm":
            out.setdefault(name, []).append(_special(sub or "", decode_message(val, sub or "")))
        elif kind in ("ms", "mb", "mm"):
            k, v = _map_entry(val, kind, sub)
            out.setdefault(name, {})[k] = v
    return _prune(out)


def _prune(d: dict[str, Any]) -> dict[str, Any]:
    """Drop what Go's JSON encoding would omit (empty strings, zero values of non-pointers)."""
    for k in list(d):
        v = d[k]
        if v is None or v == "" or v == [] or v == {}:
            del d[k]
        elif (v is False or v == 0) and k not in KEEP_ZERO and not isinstance(v, str):
            del d[k]
    return d


def decode(body: bytes) -> dict[str, Any]:
    """A Kubernetes protobuf request body to its JSON object."""
    if not body.startswith(MAGIC):
        raise bad_request("protobuf body without the k8s magic prefix")
    try:
        api_version = kind = ""
        raw = b""
        for num, _, val in _fields(body[len(MAGIC):]):
            if num == 1:
                for n2, _, v2 in _fields(val):
                    if n2 == 1:
                        api_version = v2.decode()
                    elif n2 == 2:
                        kind = v2.decode()
            elif num == 2:
                raw = val
        if kind not in SCHEMAS:
            raise bad_request(f"kubesim cannot decode protobuf for kind {kind!r}; send application/json")
        obj = decode_message(raw, kind)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad_request(f"error decoding protobuf body: {e}") from None
    out = {"apiVersion": api_version, "kind": kind}
    out.update(obj)
    return out
