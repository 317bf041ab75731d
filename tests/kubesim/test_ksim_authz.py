"""RBAC for non-admin identities and the access-review APIs (authorization.k8s.io, authentication.k8s.io)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FAST
from ksim_helpers import Kubectl

from kubesim import Fleet, start_fleet
from kubesim.authz import attributes

RBAC = "rbac.authorization.k8s.io"
FLEET: dict[str, Any] = {
    "defaults": {"timings": FAST},
    "clusters": [{
        "name": "acl", "kind": "imported", "version": "v1.27.3", "nodes": {"controlplane": 1, "worker": 2},
        "users": [{"name": "jane", "token": "jane-token", "groups": ["viewers"]},
                  {"name": "boss", "token": "boss-token"}],
        "service_accounts": [{"name": "inventory", "namespace": "corral"}],
        "rbac": [
            {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": {"name": "node-reader"},
             "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]},
            {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "jane-nodes"},
             "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "node-reader"},
             "subjects": [{"apiGroup": RBAC, "kind": "User", "name": "jane"}]},
            {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "inventory-nodes"},
             "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "node-reader"},
             "subjects": [{"kind": "ServiceAccount", "name": "inventory", "namespace": "corral"}]},
            {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": {"name": "impersonator"},
             "rules": [{"apiGroups": [""], "resources": ["users", "groups"], "verbs": ["impersonate"]}]},
            {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "boss-impersonates"},
             "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "impersonator"},
             "subjects": [{"apiGroup": RBAC, "kind": "User", "name": "boss"}]},
            {"apiVersion": f"{RBAC}/v1", "kind": "Role",
             "metadata": {"name": "web-config", "namespace": "default"},
             "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"],
                        "resourceNames": ["web"]}]},
            {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding",
             "metadata": {"name": "viewers-web-config", "namespace": "default"},
             "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "web-config"},
             "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": "viewers"}]},
        ],
        "workloads": [{"manifest": {"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": "web", "namespace": "default"}, "data": {"a": "1"}}}],
    }],
}


@pytest.fixture(scope="module")
def acl() -> Iterator[Fleet]:
    sim = start_fleet(FLEET)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def configs(acl: Fleet, tmp_path: Path) -> dict[str, Path]:
    out = {}
    for who in ("admin", "jane", "boss", "corral/inventory"):
        p = tmp_path / f"{who.replace('/', '-')}.yaml"
        p.write_text(acl.kubeconfig("acl", None if who == "admin" else who))
        out[who] = p
    return out


def _http(sim: Fleet, method: str, path: str, token: str, body: Any = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    assert sim.cert is not None
    ctx = ssl.create_default_context(cadata=sim.cert.ca_pem.decode())
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(sim.server_url("acl") + path, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, {"text": raw.decode()}


def _forbidden(message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": "Forbidden", "details": details, "code": 403}


# ---------------------------------------------------------------------- kubectl 1.27 and 1.33
def test_can_i_for_a_least_privilege_token(kubectl_binary: str, configs: dict[str, Path]) -> None:
    jane = Kubectl(kubectl_binary, configs["jane"])
    yes = jane.run("auth", "can-i", "list", "nodes")
    assert (yes.returncode, yes.stdout.strip()) == (0, "yes")
    no = jane.run("auth", "can-i", "list", "pods", check=False)
    assert (no.returncode, no.stdout.strip()) == (1, "no")
    assert jane.out("auth", "can-i", "get", "configmaps/web").strip() == "yes"  # resourceNames
    assert jane.run("auth", "can-i", "get", "configmaps/other", check=False).stdout.strip() == "no"
    listing = jane.out("auth", "can-i", "--list")
    rows = {line.split()[0]: line for line in listing.splitlines()[1:] if line and not line.startswith(" ")}
    assert "[get list watch]" in rows["nodes"]
    assert "[web]" in rows["configmaps"] and "[get]" in rows["configmaps"]
    assert "selfsubjectaccessreviews.authorization.k8s.io" in rows and "pods" not in rows
    assert "[/version]" in listing and "[/api/*]" in listing


def test_forbidden_list_reads_like_a_real_server(kubectl_binary: str, configs: dict[str, Path]) -> None:
    jane = Kubectl(kubectl_binary, configs["jane"])
    proc = jane.run("get", "pods", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ('Error from server (Forbidden): pods is forbidden: User "jane" cannot list '
                                   'resource "pods" in API group "" in the namespace "default"')
    proc = jane.run("get", "deployments", "-n", "kube-system", "coredns", check=False)
    assert proc.stderr.strip() == ('Error from server (Forbidden): deployments.apps "coredns" is forbidden: User "jane" '
                                   'cannot get resource "deployments" in API group "apps" in the namespace "kube-system"')
    proc = jane.run("delete", "node", "acl-worker-1", check=False)
    assert 'nodes "acl-worker-1" is forbidden: User "jane" cannot delete resource "nodes" in API group "" at the ' \
           'cluster scope' in proc.stderr
    assert "acl-worker-1" in jane.out("get", "nodes", "-o", "name")


def test_rolebinding_created_later_grants_access_at_once(kubectl_binary: str, acl: Fleet,
                                                         configs: dict[str, Path]) -> None:
    admin, jane = Kubectl(kubectl_binary, configs["admin"]), Kubectl(kubectl_binary, configs["jane"])
    ns = "later-" + kubectl_binary.rsplit(".", 1)[-1].replace(".", "")
    admin.run("create", "namespace", ns)
    assert jane.run("get", "pods", "-n", ns, check=False).returncode == 1
    admin.run("create", "role", "pod-reader", "-n", ns, "--verb=get,list,watch", "--resource=pods")
    admin.run("create", "rolebinding", "jane-pods", "-n", ns, "--role=pod-reader", "--user=jane")
    assert jane.out("auth", "can-i", "list", "pods", "-n", ns).strip() == "yes"
    proc = jane.run("get", "pods", "-n", ns)
    assert "No resources found" in proc.stderr
    admin.run("delete", "rolebinding", "jane-pods", "-n", ns)
    assert jane.run("auth", "can-i", "list", "pods", "-n", ns, check=False).stdout.strip() == "no"


def test_impersonation_only_for_those_allowed(kubectl_binary: str, configs: dict[str, Path]) -> None:
    admin = Kubectl(kubectl_binary, configs["admin"])
    assert admin.out("auth", "can-i", "create", "deployments").strip() == "yes"
    no = admin.run("auth", "can-i", "create", "deployments", "--as=jane", check=False)
    assert (no.returncode, no.stdout.strip()) == (1, "no")
    assert admin.out("auth", "can-i", "list", "nodes", "--as=jane").strip() == "yes"
    boss = Kubectl(kubectl_binary, configs["boss"])
    assert boss.run("auth", "can-i", "list", "nodes", check=False).stdout.strip() == "no"
    assert boss.out("auth", "can-i", "list", "nodes", "--as=jane").strip() == "yes"
    assert "acl-worker-1" in boss.out("get", "nodes", "--as=jane")
    proc = Kubectl(kubectl_binary, configs["jane"]).run("get", "nodes", "--as=boss", check=False)
    assert proc.returncode == 1 and "Error from server (Forbidden)" in proc.stderr  # kubectl 1.33: "unknown"


def test_impersonation_refusal_body(acl: Fleet) -> None:
    assert _http(acl, "GET", "/api/v1/nodes", "jane-token", headers={"Impersonate-User": "boss"}) == (
        403, _forbidden('users "boss" is forbidden: User "jane" cannot impersonate resource "users" in API group "" '
                        'at the cluster scope', {"name": "boss", "kind": "users"}))
    code, body = _http(acl, "GET", "/api/v1/nodes", "boss-token",
                       headers={"Impersonate-User": "jane", "Impersonate-Group": "admins"})
    assert code == 200 and len(body["items"]) == 3
    code, body = _http(acl, "GET", "/api/v1/nodes", "boss-token",
                       headers={"Impersonate-User": "system:serviceaccount:corral:inventory"})
    assert code == 403 and body["message"].startswith(
        'serviceaccounts "inventory" is forbidden: User "boss" cannot impersonate resource "serviceaccounts" in API '
        'group "" in the namespace "corral"')


def test_whoami_and_service_account_token(kubectl_binary: str, configs: dict[str, Path]) -> None:
    out = Kubectl(kubectl_binary, configs["jane"]).out("auth", "whoami")
    assert "jane" in out and "[viewers system:authenticated]" in out
    sa = Kubectl(kubectl_binary, configs["corral/inventory"])
    assert "system:serviceaccount:corral:inventory" in sa.out("auth", "whoami")
    assert "acl-worker-1" in sa.out("get", "nodes")
    proc = sa.run("get", "secrets", "-n", "corral", check=False)
    assert 'User "system:serviceaccount:corral:inventory" cannot list resource "secrets"' in proc.stderr


def test_bad_token_is_401(kubectl_binary: str, acl: Fleet, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(acl.kubeconfig("acl").replace(acl.clusters["acl"].token, "not-a-token"))
    proc = Kubectl(kubectl_binary, cfg).run("get", "nodes", check=False)
    assert proc.returncode == 1
    assert "error: You must be logged in to the server (" in proc.stderr  # 1.33 words the 401 differently


# ---------------------------------------------------------------------- the wire
def test_forbidden_status_bodies(acl: Fleet) -> None:
    tok = "jane-token"
    assert _http(acl, "GET", "/api/v1/namespaces/default/pods", tok) == (403, _forbidden(
        'pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default"',
        {"kind": "pods"}))
    assert _http(acl, "GET", "/api/v1/namespaces/default/pods/x", tok) == (403, _forbidden(
        'pods "x" is forbidden: User "jane" cannot get resource "pods" in API group "" in the namespace "default"',
        {"name": "x", "kind": "pods"}))
    assert _http(acl, "GET", "/api/v1/namespaces", tok) == (403, _forbidden(
        'namespaces is forbidden: User "jane" cannot list resource "namespaces" in API group "" at the cluster scope',
        {"kind": "namespaces"}))
    assert _http(acl, "GET", "/api/v1/namespaces/kube-system", tok) == (403, _forbidden(
        'namespaces "kube-system" is forbidden: User "jane" cannot get resource "namespaces" in API group "" in the '
        'namespace "kube-system"', {"name": "kube-system", "kind": "namespaces"}))
    assert _http(acl, "PATCH", "/api/v1/nodes/acl-worker-1/status", tok, {}) == (403, _forbidden(
        'nodes "acl-worker-1" is forbidden: User "jane" cannot patch resource "nodes/status" in API group "" at the '
        'cluster scope', {"name": "acl-worker-1", "kind": "nodes"}))
    assert _http(acl, "GET", "/apis/apps/v1/watch/namespaces/default/deployments", tok) == (403, _forbidden(
        'deployments.apps is forbidden: User "jane" cannot watch resource "deployments" in API group "apps" in the '
        'namespace "default"', {"group": "apps", "kind": "deployments"}))
    assert _http(acl, "GET", "/api/v1/pods?watch=true", tok)[1]["message"].startswith(
        'pods is forbidden: User "jane" cannot watch resource "pods" in API group "" at the cluster scope')
    assert _http(acl, "GET", "/logs", tok) == (403, _forbidden(
        'forbidden: User "jane" cannot get path "/logs"', {}))
    for path in ("/version", "/api", "/api/v1", "/apis", "/apis/apps/v1", "/openapi/v3", "/healthz"):
        assert _http(acl, "GET", path, tok)[0] == 200, path
    code, body = _http(acl, "GET", "/api/v1/nodes?watch=true&timeoutSeconds=1", tok)
    assert code == 200  # a watch jane may do


def test_unknown_token_is_401_and_missing_role_is_named(acl: Fleet) -> None:
    assert _http(acl, "GET", "/api/v1/nodes", "nope") == (401, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized",
        "reason": "Unauthorized", "code": 401})
    admin = acl.clusters["acl"].token
    binding = {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": {"name": "dangling"},
               "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "gone"},
               "subjects": [{"apiGroup": RBAC, "kind": "User", "name": "jane"}]}
    assert _http(acl, "POST", f"/apis/{RBAC}/v1/namespaces/kube-public/rolebindings", admin, binding)[0] == 201
    code, body = _http(acl, "GET", "/api/v1/namespaces/kube-public/services", "jane-token")
    assert code == 403 and body["message"].endswith(
        'in the namespace "kube-public": RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found')


def test_service_account_token_secret_created_through_the_api(acl: Fleet) -> None:
    admin = acl.clusters["acl"].token
    base = "/api/v1/namespaces/default"
    assert _http(acl, "POST", f"{base}/serviceaccounts", admin, {"metadata": {"name": "bot"}})[0] == 201
    code, secret = _http(acl, "POST", f"{base}/secrets", admin, {
        "metadata": {"name": "bot-token", "annotations": {"kubernetes.io/service-account.name": "bot"}},
        "type": "kubernetes.io/service-account-token"})
    assert code == 201 and {"token", "namespace"} <= set(secret["data"])
    import base64

    token = base64.b64decode(secret["data"]["token"]).decode()
    assert _http(acl, "GET", f"{base}/configmaps", token)[1]["message"].startswith(
        'configmaps is forbidden: User "system:serviceaccount:default:bot" cannot list')
    grant = {"metadata": {"name": "bot-cm"}, "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "view-cm"},
             "subjects": [{"kind": "ServiceAccount", "name": "bot"}]}
    role = {"metadata": {"name": "view-cm"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                                                         "verbs": ["list"]}]}
    assert _http(acl, "POST", f"/apis/{RBAC}/v1/clusterroles", admin, role)[0] == 201
    assert _http(acl, "POST", f"/apis/{RBAC}/v1/namespaces/default/rolebindings", admin, grant)[0] == 201
    assert _http(acl, "GET", f"{base}/configmaps", token)[0] == 200
    assert _http(acl, "GET", "/api/v1/namespaces/kube-system/configmaps", token)[0] == 403
    assert _http(acl, "DELETE", f"{base}/secrets/bot-token", admin)[0] == 200
    assert _http(acl, "GET", f"{base}/configmaps", token)[0] == 401  # a deleted token secret revokes the token


def test_official_client_access_reviews(acl: Fleet) -> None:
    from kubernetes import client, config

    def api(who: str | None) -> Any:
        return config.new_client_from_config_dict(yaml.safe_load(acl.kubeconfig("acl", who)))

    def ssar(c: Any, **attrs: str) -> Any:
        body = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(**attrs)))
        return client.AuthorizationV1Api(c).create_self_subject_access_review(body).status

    jane = api("jane")
    st = ssar(jane, verb="list", resource="nodes")
    assert st.allowed is True
    assert st.reason == 'RBAC: allowed by ClusterRoleBinding "jane-nodes" of ClusterRole "node-reader" to User "jane"'
    assert ssar(jane, verb="list", resource="pods", namespace="default").allowed is False
    assert ssar(api(None), verb="delete", resource="nodes").allowed is True
    sar = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user="someone", groups=["viewers"], resource_attributes=client.V1ResourceAttributes(
            verb="get", resource="configmaps", name="web", namespace="default")))
    got = client.AuthorizationV1Api(api(None)).create_subject_access_review(sar).status
    assert got.allowed is True and 'RoleBinding "viewers-web-config/default"' in got.reason
    with pytest.raises(client.ApiException) as exc:  # jane may not ask about others
        client.AuthorizationV1Api(jane).create_subject_access_review(sar)
    assert exc.value.status == 403
    rules = client.AuthorizationV1Api(jane).create_self_subject_rules_review(client.V1SelfSubjectRulesReview(
        spec=client.V1SelfSubjectRulesReviewSpec(namespace="default"))).status
    assert {"verbs": ["get", "list", "watch"], "api_groups": [""], "resources": ["nodes"]} in [
        {k: v for k, v in r.to_dict().items() if v is not None} for r in rules.resource_rules]
    assert any("/version" in json.dumps(r.to_dict()) for r in rules.non_resource_rules)
    with pytest.raises(client.ApiException) as exc:
        client.CoreV1Api(jane).list_namespaced_pod("default")
    assert exc.value.status == 403 and json.loads(exc.value.body)["reason"] == "Forbidden"


def test_discovery_serves_the_review_groups(acl: Fleet) -> None:
    admin = acl.clusters["acl"].token
    code, doc = _http(acl, "GET", "/apis/authorization.k8s.io/v1", admin)
    assert code == 200 and {r["name"]: r["verbs"] for r in doc["resources"]} == {
        "selfsubjectaccessreviews": ["create"], "selfsubjectrulesreviews": ["create"],
        "subjectaccessreviews": ["create"], "localsubjectaccessreviews": ["create"]}
    groups = {g["name"]: [v["version"] for v in g["versions"]] for g in _http(acl, "GET", "/apis", admin)[1]["groups"]}
    assert groups["authorization.k8s.io"] == ["v1"] and groups["authentication.k8s.io"] == ["v1", "v1beta1"]  # 1.27
    assert _http(acl, "GET", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", admin)[0] == 405


def test_request_attributes_like_kube_apiserver() -> None:
    a = attributes("GET", "/api/v1/namespaces/default/pods", {})
    assert (a.verb, a.resource, a.namespace, a.name) == ("list", "pods", "default", "")
    a = attributes("GET", "/api/v1/namespaces/default/pods", {"fieldSelector": "metadata.name=web"})
    assert (a.verb, a.name) == ("list", "web")
    a = attributes("GET", "/apis/apps/v1/watch/namespaces/x/deployments/d", {})
    assert (a.verb, a.group, a.resource, a.name, a.namespace) == ("watch", "apps", "deployments", "d", "x")
    a = attributes("PUT", "/api/v1/namespaces/x/finalize", {})
    assert (a.verb, a.resource, a.name, a.subresource, a.namespace) == ("update", "namespaces", "x", "finalize", "x")
    a = attributes("DELETE", "/api/v1/namespaces/x/pods", {})
    assert a.verb == "deletecollection"
    a = attributes("POST", "/api/v1/namespaces/x/pods/p/eviction", {})
    assert (a.verb, a.full_resource) == ("create", "pods/eviction")
    for path in ("/api", "/api/v1", "/apis/apps", "/apis/apps/v1", "/version", "/openapi/v3/apis/apps/v1"):
        assert not attributes("GET", path, {}).resource_request, path
