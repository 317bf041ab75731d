"""Policy checks Corral evaluates itself, through the Kubernetes API (CIS 1.8 section 5, 1.4's 1.6 and 1.7).

Each evaluator reads a :class:`Snapshot` of the cluster (RBAC, namespaces, pods, service accounts,
network policies, Pod Security Policies before 1.25, the API server's flags where its mirror pods
show them) and answers pass or fail with the evidence: the objects that make it fail. System
namespaces (``kube-*``, ``cattle-*``, the upgrade and scan namespaces) and the platform's own
roles (``system:*``) are left out, as the benchmark intends.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clusters import kube

SYSTEM_NAMESPACES = {"kube-system", "kube-public", "kube-node-lease", "system-upgrade", "corral-cis",
                     "cis-operator-system", "local-path-storage"}
BUILTIN_ROLES = {"cluster-admin", "admin", "edit", "view"}
LEVELS = {"privileged": 0, "baseline": 1, "restricted": 2}
ENFORCE = "pod-security.kubernetes.io/enforce"
EVIDENCE_LIMIT = 50


class EvaluationError(Exception):
    """The cluster could not tell: the check is an Error, never a Pass."""


@dataclass
class Outcome:
    result: str  # pass | fail
    reason: str
    evidence: dict[str, Any]


def system_namespace(ns: str) -> bool:
    return ns in SYSTEM_NAMESPACES or ns.startswith("cattle-") or ns.startswith("kube-")


class Snapshot:
    """What the policy checks read, fetched once per scan and only when a check needs it."""

    PATHS = {
        "namespaces": "/api/v1/namespaces",
        "pods": "/api/v1/pods",
        "serviceaccounts": "/api/v1/serviceaccounts",
        "services": "/api/v1/services",
        "roles": "/apis/rbac.authorization.k8s.io/v1/roles",
        "clusterroles": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "rolebindings": "/apis/rbac.authorization.k8s.io/v1/rolebindings",
        "clusterrolebindings": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "networkpolicies": "/apis/networking.k8s.io/v1/networkpolicies",
        "deployments": "/apis/apps/v1/deployments",
        "podsecuritypolicies": "/apis/policy/v1beta1/podsecuritypolicies",
    }

    def __init__(self, api, minor: int | None):
        self.api = api
        self.minor = minor if minor is not None else 99
        self._cache: dict[str, list[dict[str, Any]]] = {}

    def items(self, what: str) -> list[dict[str, Any]]:
        if what not in self._cache:
            try:
                self._cache[what] = self.api.request("GET", self.PATHS[what]).get("items") or []
            except kube.ClusterError as exc:
                if what == "podsecuritypolicies" and exc.status == 404:
                    self._cache[what] = []
                else:
                    raise EvaluationError(f"could not list {what}: {exc.reason}") from None
        return self._cache[what]

    def app_namespaces(self) -> list[str]:
        return sorted(n["metadata"]["name"] for n in self.items("namespaces") if not system_namespace(n["metadata"]["name"]))

    def app_pods(self) -> list[dict[str, Any]]:
        return [p for p in self.items("pods") if not system_namespace(p["metadata"].get("namespace", ""))
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]

    def apiserver_flags(self) -> dict[str, str] | None:
        """The API server's flags from its mirror pods in kube-system, or None where they are not visible."""
        for pod in self.items("pods"):
            meta = pod["metadata"]
            if meta.get("namespace") == "kube-system" and (meta.get("labels") or {}).get("component") == "kube-apiserver":
                flags = {}
                for ctr in (pod.get("spec") or {}).get("containers") or []:
                    for arg in (ctr.get("command") or []) + (ctr.get("args") or []):
                        if str(arg).startswith("--"):
                            key, _, value = str(arg)[2:].partition("=")
                            flags[key] = value or "true"
                return flags
        return None


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta.get("name", "")


def _system_role(obj: dict[str, Any]) -> bool:
    name = (obj.get("metadata") or {}).get("name", "")
    ns = (obj.get("metadata") or {}).get("namespace", "")
    return name.startswith("system:") or name in BUILTIN_ROLES or (bool(ns) and system_namespace(ns))


def _outcome(offenders: list[str], fail_reason: str, pass_reason: str, **extra) -> Outcome:
    if offenders:
        shown = offenders[:EVIDENCE_LIMIT]
        return Outcome("fail", f"{fail_reason}: {', '.join(shown[:5])}" + (f" and {len(offenders) - 5} more" if len(offenders) > 5 else ""),
                       {"offenders": shown, "count": len(offenders), **extra})
    return Outcome("pass", pass_reason, {"count": 0, **extra})


# --- RBAC ------------------------------------------------------------------------------------------------
def _rules_grant(role: dict[str, Any], resources: set[str], verbs: set[str]) -> bool:
    for rule in role.get("rules") or []:
        groups = set(rule.get("apiGroups") or [])
        if groups and not groups & {"", "*"}:
            continue
        if set(rule.get("resources") or []) & (resources | {"*"}) and set(rule.get("verbs") or []) & (verbs | {"*"}):
            return True
    return False


def _bound_roles(s: Snapshot) -> dict[tuple[str, str, str], list[str]]:
    """(kind, namespace, name) of each role → the non-system bindings that grant it."""
    out: dict[tuple[str, str, str], list[str]] = {}
    for b in s.items("clusterrolebindings") + s.items("rolebindings"):
        if _system_role(b) or not b.get("subjects"):
            continue
        ref = b.get("roleRef") or {}
        ns = (b.get("metadata") or {}).get("namespace", "") if ref.get("kind") == "Role" else ""
        out.setdefault((ref.get("kind", ""), ns, ref.get("name", "")), []).append(_name(b))
    return out


def _roles_granting(s: Snapshot, resources: set[str], verbs: set[str]) -> list[str]:
    bound = _bound_roles(s)
    offenders = []
    for kind, items in (("ClusterRole", s.items("clusterroles")), ("Role", s.items("roles"))):
        for role in items:
            if _system_role(role) or not _rules_grant(role, resources, verbs):
                continue
            key = (kind, (role.get("metadata") or {}).get("namespace", ""), role["metadata"]["name"])
            if key in bound:
                offenders.append(f"{kind} {_name(role)} (bound by {', '.join(bound[key][:3])})")
    return offenders


def cluster_admin_bindings(s: Snapshot) -> Outcome:
    offenders = []
    for b in s.items("clusterrolebindings"):
        if (b.get("roleRef") or {}).get("name") != "cluster-admin":
            continue
        for sub in b.get("subjects") or []:
            if sub.get("kind") == "Group" and sub.get("name") == "system:masters":
                continue
            if sub.get("kind") == "ServiceAccount" and sub.get("namespace") == "kube-system":
                continue
            where = f"{sub['namespace']}/" if sub.get("namespace") else ""
            offenders.append(f"{_name(b)} → {sub.get('kind')} {where}{sub.get('name')}")
    return _outcome(offenders, "cluster-admin is bound to", "cluster-admin is bound only to system:masters and kube-system")


def secrets_access(s: Snapshot) -> Outcome:
    return _outcome(_roles_granting(s, {"secrets"}, {"get", "list", "watch"}), "roles that read secrets are bound",
                    "no role that reads secrets is bound outside the platform's own")


def wildcard_roles(s: Snapshot) -> Outcome:
    offenders = []
    for role in s.items("clusterroles") + s.items("roles"):
        if _system_role(role):
            continue
        for rule in role.get("rules") or []:
            if "*" in (rule.get("verbs") or []) or "*" in (rule.get("resources") or []) or "*" in (rule.get("apiGroups") or []):
                offenders.append(("ClusterRole " if not role["metadata"].get("namespace") else "Role ") + _name(role))
                break
    return _outcome(offenders, "roles use wildcards", "no role uses '*'")


def pod_create(s: Snapshot) -> Outcome:
    return _outcome(_roles_granting(s, {"pods"}, {"create"}), "roles that create pods are bound",
                    "no role that creates pods is bound outside the platform's own")


def default_service_accounts(s: Snapshot) -> Outcome:
    bound = set()
    for b in s.items("clusterrolebindings") + s.items("rolebindings"):
        for sub in b.get("subjects") or []:
            if sub.get("kind") == "ServiceAccount" and sub.get("name") == "default":
                bound.add(sub.get("namespace") or (b.get("metadata") or {}).get("namespace", ""))
    offenders = []
    for sa in s.items("serviceaccounts"):
        ns = sa["metadata"].get("namespace", "")
        if sa["metadata"]["name"] != "default" or system_namespace(ns):
            continue
        if sa.get("automountServiceAccountToken") is not False:
            offenders.append(f"{ns}/default mounts its token")
        if ns in bound:
            offenders.append(f"{ns}/default is bound to a role")
    return _outcome(offenders, "default service accounts are in use", "default service accounts mount no token and hold no role")


def token_automount(s: Snapshot) -> Outcome:
    accounts = {(sa["metadata"].get("namespace"), sa["metadata"]["name"]): sa.get("automountServiceAccountToken")
                for sa in s.items("serviceaccounts")}
    offenders = []
    for pod in s.app_pods():
        spec = pod.get("spec") or {}
        auto = spec.get("automountServiceAccountToken")
        if auto is None:
            auto = accounts.get((pod["metadata"]["namespace"], spec.get("serviceAccountName") or "default"))
        if auto is not False:
            offenders.append(_name(pod))
    return _outcome(offenders, "pods mount a service account token", "no application pod mounts a token")


def system_masters(s: Snapshot) -> Outcome:
    offenders = [_name(b) for b in s.items("clusterrolebindings") + s.items("rolebindings")
                 if (b.get("metadata") or {}).get("name") != "cluster-admin"
                 and any(x.get("kind") == "Group" and x.get("name") == "system:masters" for x in b.get("subjects") or [])]
    return _outcome(offenders, "bindings name system:masters", "only the built-in binding names system:masters")


def bind_escalate(s: Snapshot) -> Outcome:
    offenders = [_name(r) for r in s.items("clusterroles") + s.items("roles") if not _system_role(r)
                 and any(set(rule.get("verbs") or []) & {"bind", "escalate", "impersonate"} for rule in r.get("rules") or [])]
    return _outcome(offenders, "roles may bind, escalate or impersonate", "no role may bind, escalate or impersonate")


# --- Pod Security ----------------------------------------------------------------------------------------
def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod.get("spec") or {}
    return (spec.get("initContainers") or []) + (spec.get("containers") or []) + (spec.get("ephemeralContainers") or [])


def _sc(ctr: dict[str, Any]) -> dict[str, Any]:
    return ctr.get("securityContext") or {}


POD_TESTS: dict[str, tuple[str, Callable[[dict[str, Any]], bool], str]] = {
    # key: (Pod Security level that forbids it, does this pod do it, PSP field that forbids it)
    "privileged": ("baseline", lambda p: any(_sc(c).get("privileged") for c in _containers(p)), "privileged"),
    "host_pid": ("baseline", lambda p: bool((p.get("spec") or {}).get("hostPID")), "hostPID"),
    "host_ipc": ("baseline", lambda p: bool((p.get("spec") or {}).get("hostIPC")), "hostIPC"),
    "host_network": ("baseline", lambda p: bool((p.get("spec") or {}).get("hostNetwork")), "hostNetwork"),
    "host_path": ("baseline", lambda p: any("hostPath" in v for v in (p.get("spec") or {}).get("volumes") or []), "allowedHostPaths"),
    "host_ports": ("baseline", lambda p: any(port.get("hostPort") for c in _containers(p) for port in c.get("ports") or []), "hostPorts"),
    "privilege_escalation": ("restricted", lambda p: any(_sc(c).get("allowPrivilegeEscalation") is not False for c in _containers(p)),
                             "allowPrivilegeEscalation"),
    "root_containers": ("restricted", lambda p: not ((p.get("spec") or {}).get("securityContext") or {}).get("runAsNonRoot")
                        and any(not _sc(c).get("runAsNonRoot") for c in _containers(p)), "runAsUser"),
    "net_raw": ("restricted", lambda p: any(not {"NET_RAW", "ALL"} & set((_sc(c).get("capabilities") or {}).get("drop") or [])
                                            for c in _containers(p)), "requiredDropCapabilities"),
    "added_capabilities": ("restricted", lambda p: any(set((_sc(c).get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}
                                                       for c in _containers(p)), "allowedCapabilities"),
}


def _psp_forbids(psp: dict[str, Any], key: str) -> bool:
    spec = psp.get("spec") or {}
    if key == "privilege_escalation":
        return spec.get("allowPrivilegeEscalation") is False
    if key == "root_containers":
        return (spec.get("runAsUser") or {}).get("rule") == "MustRunAsNonRoot"
    if key == "net_raw":
        return bool({"NET_RAW", "ALL"} & set(spec.get("requiredDropCapabilities") or []))
    if key == "added_capabilities":
        return not set(spec.get("allowedCapabilities") or []) - {"NET_BIND_SERVICE"}
    if key == "host_path":
        return "hostPath" not in (spec.get("volumes") or ["*"]) and "*" not in (spec.get("volumes") or ["*"])
    if key == "host_ports":
        return not spec.get("hostPorts")
    return not spec.get(POD_TESTS[key][2])


def _psp_admission(s: Snapshot) -> tuple[bool, str]:
    flags = s.apiserver_flags()
    if flags is None:
        return bool(s.items("podsecuritypolicies")), "the API server's flags are not visible; PodSecurityPolicies exist"
    plugins = [p.strip() for p in flags.get("enable-admission-plugins", "").split(",")]
    return "PodSecurityPolicy" in plugins, "admission plugins: " + (flags.get("enable-admission-plugins") or "(defaults)")


def _unguarded(s: Snapshot, key: str) -> tuple[list[str], str]:
    """Application namespaces where the cluster would admit such a pod, and how that was judged."""
    level = POD_TESTS[key][0]
    if s.minor >= 25:
        out = []
        for ns in s.items("namespaces"):
            name = ns["metadata"]["name"]
            if system_namespace(name):
                continue
            enforce = (ns["metadata"].get("labels") or {}).get(ENFORCE, "privileged")
            if LEVELS.get(enforce, 0) < LEVELS[level]:
                out.append(f"namespace {name} ({ENFORCE}={enforce}, needs {level})")
        return out, f"Pod Security admission, level {level} or stricter"
    enabled, how = _psp_admission(s)
    psps = s.items("podsecuritypolicies")
    if not enabled:
        return [f"PodSecurityPolicy admission is off ({how})"], "PodSecurityPolicy"
    loose = [f"PodSecurityPolicy {_name(p)}" for p in psps if not _psp_forbids(p, key)]
    return (loose if psps else ["no PodSecurityPolicy exists"]), "PodSecurityPolicy"


def _pod_security(key: str) -> Callable[[Snapshot], Outcome]:
    def evaluate(s: Snapshot) -> Outcome:
        _level, does, _field = POD_TESTS[key]
        running = [f"pod {_name(p)}" for p in s.app_pods() if does(p)]
        unguarded, how = _unguarded(s, key)
        offenders = running + unguarded
        return _outcome(offenders, "admitted or running", f"every application namespace is guarded ({how}) and no "
                        "application pod does it", guard=how, running=running[:EVIDENCE_LIMIT],
                        unguarded=unguarded[:EVIDENCE_LIMIT])

    evaluate.__name__ = key
    return evaluate


def policy_control(s: Snapshot) -> Outcome:
    if s.minor >= 25:
        offenders = [f"namespace {ns['metadata']['name']}" for ns in s.items("namespaces")
                     if not system_namespace(ns["metadata"]["name"]) and ENFORCE not in (ns["metadata"].get("labels") or {})]
        return _outcome(offenders, "namespaces without Pod Security enforcement",
                        "every application namespace enforces a Pod Security level")
    enabled, how = _psp_admission(s)
    if enabled and s.items("podsecuritypolicies"):
        return Outcome("pass", f"PodSecurityPolicy admission is on ({how})", {"count": 0})
    return Outcome("fail", f"no active policy control: PodSecurityPolicy admission {'on' if enabled else 'off'} ({how}), "
                   f"{len(s.items('podsecuritypolicies'))} policies", {"count": 1})


# --- network, secrets, namespaces ------------------------------------------------------------------------
def network_policies(s: Snapshot) -> Outcome:
    covered = {p["metadata"].get("namespace") for p in s.items("networkpolicies")}
    offenders = [f"namespace {ns}" for ns in s.app_namespaces() if ns not in covered]
    return _outcome(offenders, "namespaces without a NetworkPolicy", "every application namespace has a NetworkPolicy")


def secrets_in_env(s: Snapshot) -> Outcome:
    offenders = []
    for pod in s.app_pods():
        for ctr in _containers(pod):
            refs = [e["name"] for e in ctr.get("env") or [] if ((e.get("valueFrom") or {}).get("secretKeyRef"))]
            refs += [f"envFrom {(e.get('secretRef') or {}).get('name')}" for e in ctr.get("envFrom") or [] if e.get("secretRef")]
            if refs:
                offenders.append(f"pod {_name(pod)} container {ctr.get('name')}: {', '.join(refs)}")
    return _outcome(offenders, "secrets reach containers as environment variables", "no container takes a secret as an environment variable")


def seccomp(s: Snapshot) -> Outcome:
    def confined(pod):
        spec = pod.get("spec") or {}
        if ((spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost"):
            return True
        ann = (pod["metadata"].get("annotations") or {}).get("seccomp.security.alpha.kubernetes.io/pod", "")
        if ann in ("runtime/default", "docker/default") or ann.startswith("localhost/"):
            return True
        ctrs = _containers(pod)
        return bool(ctrs) and all((_sc(c).get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost") for c in ctrs)

    return _outcome([f"pod {_name(p)}" for p in s.app_pods() if not confined(p)], "pods run without a seccomp profile",
                    "every application pod runs with a seccomp profile")


def default_namespace(s: Snapshot) -> Outcome:
    offenders = [f"pod {_name(p)}" for p in s.items("pods") if p["metadata"].get("namespace") == "default"]
    offenders += [f"deployment {_name(d)}" for d in s.items("deployments") if d["metadata"].get("namespace") == "default"]
    offenders += [f"service {_name(v)}" for v in s.items("services")
                  if v["metadata"].get("namespace") == "default" and v["metadata"]["name"] != "kubernetes"]
    return _outcome(offenders, "objects live in the default namespace", "the default namespace holds nothing but its own")


EVALUATORS: dict[str, Callable[[Snapshot], Outcome]] = {
    "cluster_admin_bindings": cluster_admin_bindings,
    "secrets_access": secrets_access,
    "wildcard_roles": wildcard_roles,
    "pod_create": pod_create,
    "default_service_accounts": default_service_accounts,
    "token_automount": token_automount,
    "system_masters": system_masters,
    "bind_escalate": bind_escalate,
    "policy_control": policy_control,
    "network_policies": network_policies,
    "secrets_in_env": secrets_in_env,
    "seccomp": seccomp,
    "default_namespace": default_namespace,
    **{key: _pod_security(key) for key in POD_TESTS},
}


def evaluate(name: str, snapshot: Snapshot) -> Outcome:
    """Run one evaluator; raises EvaluationError when the cluster could not answer."""
    try:
        fn = EVALUATORS[name]
    except KeyError:
        raise EvaluationError(f"Corral has no evaluator {name!r}") from None
    return fn(snapshot)
