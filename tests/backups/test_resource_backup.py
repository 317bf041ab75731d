"""Resource backups (backups.resources) of a simulated imported cluster through the official client:
a namespace with a Deployment, ConfigMap, Secret and a custom object is backed up, deleted and
restored; filters; tampered archives are refused before anything changes."""
from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json
import time

import pytest

from backups import resources as rb
from clusters.nodeops import ClusterApi

A, B = "bk-a", "bk-b"
CRD = "widgets.example.com"
SECRET_BYTES = bytes(range(256))  # not UTF-8: data must survive as bytes, not text


@pytest.fixture(scope="module")
def sim():
    from kubesim import start_fleet

    cluster = {"kind": "imported", "version": "v1.27.3", "nodes": {"controlplane": 1, "worker": 1},
               "timings": {"pod_start": 0.05, "pod_stop": 0.05}}
    fleet = start_fleet({"clusters": [{"name": A, **cluster}, {"name": B, **cluster}]})
    yield fleet
    fleet.stop()


class RecordingApi(ClusterApi):
    """ClusterApi that notes every request, so a test can tell that nothing was written."""

    def __init__(self, kubeconfig: str):
        super().__init__(kubeconfig)
        self.calls: list[tuple[str, str]] = []

    def request(self, method, path, body=None, **kw):
        self.calls.append((method, path))
        return super().request(method, path, body, **kw)

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] != "GET"]


@pytest.fixture
def api(sim):
    client = RecordingApi(sim.kubeconfig(A))
    seed(client)
    yield client
    for ns in ("shop", "other"):
        delete_namespace(client, ns)
    if client.exists(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD}"):
        client.request("DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD}")
    client.close()


def wait_for(predicate, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def delete_namespace(api: ClusterApi, name: str) -> None:
    if api.exists(f"/api/v1/namespaces/{name}"):
        api.request("DELETE", f"/api/v1/namespaces/{name}")
    wait_for(lambda: api.exists(f"/api/v1/namespaces/{name}") is None, what=f"namespace {name} to go")


def seed(api: ClusterApi) -> None:
    """namespace shop: Deployment web, ConfigMap settings, Secret creds, Widget gizmo (a CRD's object),
    a naked Pod, Service web; namespace other: a ConfigMap."""
    for ns in ("shop", "other"):
        api.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns, "labels": {"team": "retail"}}})
    api.request("POST", "/apis/apps/v1/namespaces/shop/deployments", {
        "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"owner": "retail"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                                                       "env": [{"name": "MODE", "value": "live"}]}]}}}})
    api.request("POST", "/api/v1/namespaces/shop/configmaps",
                {"metadata": {"name": "settings"}, "data": {"colour": "blue", "size": "42"}})
    api.request("POST", "/api/v1/namespaces/shop/secrets",
                {"metadata": {"name": "creds"}, "type": "Opaque",
                 "data": {"password": base64.b64encode(b"s3cr3t\n").decode(),
                          "blob": base64.b64encode(SECRET_BYTES).decode()}})
    api.request("POST", "/api/v1/namespaces/shop/pods",
                {"metadata": {"name": "debug"}, "spec": {"containers": [{"name": "sh", "image": "busybox"}]}})
    api.request("POST", "/api/v1/namespaces/other/configmaps", {"metadata": {"name": "misc"}, "data": {"a": "1"}})
    api.request("POST", "/api/v1/namespaces/shop/services",
                {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    api.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {
        "metadata": {"name": CRD},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}]}})
    wait_for(lambda: any(r["name"] == "widgets" for r in
                         (api.exists("/apis/example.com/v1") or {}).get("resources", [])), what="widgets served")
    api.request("POST", "/apis/example.com/v1/namespaces/shop/widgets",
                {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "gizmo"},
                 "spec": {"teeth": 12, "colours": ["red", "green"]}})
    wait_for(lambda: (api.exists("/apis/apps/v1/namespaces/shop/deployments/web") or {})
             .get("status", {}).get("readyReplicas") == 2, what="web to be ready")


def snapshot(api: ClusterApi) -> dict[str, object]:
    """What the tests compare before and after: the objects' own content."""
    return {
        "deployment": api.request("GET", "/apis/apps/v1/namespaces/shop/deployments/web")["spec"],
        "deployment_labels": api.request("GET", "/apis/apps/v1/namespaces/shop/deployments/web")["metadata"]["labels"],
        "configmap": api.request("GET", "/api/v1/namespaces/shop/configmaps/settings")["data"],
        "secret": api.request("GET", "/api/v1/namespaces/shop/secrets/creds")["data"],
        "widget": api.request("GET", "/apis/example.com/v1/namespaces/shop/widgets/gizmo")["spec"],
        "namespace_labels": api.request("GET", "/api/v1/namespaces/shop")["metadata"]["labels"],
    }


def delete_shop(api: ClusterApi) -> None:
    delete_namespace(api, "shop")
    api.request("DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD}")
    wait_for(lambda: api.exists(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD}") is None,
             what="the CRD to go")


def document(archive: bytes) -> dict:
    return json.loads(gzip.decompress(archive))


def refs(report: dict, key: str) -> list[tuple[str, ...]]:
    """One list of a restore's report ([resource, namespace, name] each) as tuples."""
    return [tuple(r) for r in report[key]]


def difference(report: dict) -> dict[str, list[tuple[str, ...]]]:
    return {k: [tuple(r) for r in v] for k, v in report["difference"].items()}


# ---------------------------------------------------------------------- round trip
def test_backup_delete_restore_brings_the_namespace_back(api):
    before = snapshot(api)
    uid = rb.cluster_identity(api)
    said: list[tuple[int, str]] = []
    archive, manifest = rb.dump(api, cluster_name=A, include_namespaces=["shop"],
                                progress=lambda p, m: said.append((p, m)))
    assert manifest["format"] == "corral.resource-backup/v1" and manifest["cluster"] == uid
    assert manifest["cluster_name"] == A and manifest["kubernetes_version"] == "v1.27.3"
    assert manifest["size"] == len(archive) and len(manifest["sha256"]) == 64
    assert manifest["filters"]["include_namespaces"] == ["shop"]
    inv = {tuple(r) for r in manifest["inventory"]}
    assert {("namespaces", "", "shop"), ("deployments.apps", "shop", "web"), ("configmaps", "shop", "settings"),
            ("secrets", "shop", "creds"), ("widgets.example.com", "shop", "gizmo"), ("pods", "shop", "debug"),
            ("customresourcedefinitions.apiextensions.k8s.io", "", CRD)} <= inv
    assert not {r for r in inv if r[0] in ("replicasets.apps", "events", "nodes")}
    assert not {r for r in inv if r[0] == "pods" and r[2] != "debug"}  # the Deployment's pods come back from it
    assert manifest["counts"]["deployments.apps"] == 1 and manifest["objects"] == len(inv)
    assert said[-1][0] == 100 and [p for p, _ in said] == sorted(p for p, _ in said)

    doc = document(archive)
    assert doc["manifest"] == {k: v for k, v in manifest.items() if k not in ("size", "sha256")}
    objects = {(e["resource"], e["object"]["metadata"]["name"]): e["object"] for e in doc["objects"]}
    deployment = objects[("deployments.apps", "web")]
    assert "status" not in deployment and deployment["spec"] == before["deployment"]
    for obj in objects.values():
        assert not {"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"} \
            & set(obj["metadata"])
    assert "status" not in objects[("namespaces", "shop")]
    assert "nodeName" not in objects[("pods", "debug")]["spec"]
    assert "clusterIP" not in objects[("services", "web")]["spec"]  # allocated again on create

    delete_shop(api)
    assert api.exists("/apis/apps/v1/namespaces/shop/deployments/web") is None

    report = rb.restore(api, archive, expect_cluster=uid, manifest=manifest)
    assert report["failed"] == [] and report["ok"]
    assert difference(report) == {"missing": [], "extra": []}
    assert set(refs(report, "created")) >= inv - {("serviceaccounts", "shop", "default")}
    assert snapshot(api) == before
    assert base64.b64decode(api.request("GET", "/api/v1/namespaces/shop/secrets/creds")["data"]["blob"]) \
        == SECRET_BYTES
    wait_for(lambda: (api.exists("/apis/apps/v1/namespaces/shop/deployments/web") or {})
             .get("status", {}).get("readyReplicas") == 2, what="the restored Deployment to run its pods")
    assert json.loads(json.dumps(report)) == report  # a job can keep it as its result

    again = rb.restore(api, archive, expect_cluster=uid, manifest=manifest)
    assert refs(again, "created") == [] and refs(again, "updated") == [] and again["failed"] == []
    assert set(refs(again, "unchanged")) == inv and difference(again) == {"missing": [], "extra": []}


def test_restore_replaces_what_differs_and_prunes_only_when_asked(api):
    uid = rb.cluster_identity(api)
    archive, manifest = rb.dump(api, cluster_name=A, include_namespaces=["shop"])
    settings = api.request("GET", "/api/v1/namespaces/shop/configmaps/settings")
    settings["data"] = {"colour": "red"}
    api.request("PUT", "/api/v1/namespaces/shop/configmaps/settings", settings)
    api.request("POST", "/api/v1/namespaces/shop/configmaps", {"metadata": {"name": "later"}, "data": {"x": "y"}})
    api.request("DELETE", "/api/v1/namespaces/shop/secrets/creds")
    service = api.request("GET", "/api/v1/namespaces/shop/services/web")
    service["spec"]["ports"][0]["port"] = 8080
    api.request("PUT", "/api/v1/namespaces/shop/services/web", service)

    report = rb.restore(api, archive, expect_cluster=uid, manifest=manifest)
    assert refs(report, "updated") == [("configmaps", "shop", "settings"), ("services", "shop", "web")]
    assert refs(report, "created") == [("secrets", "shop", "creds")] and report["failed"] == []
    restored = api.request("GET", "/api/v1/namespaces/shop/services/web")["spec"]
    assert restored["ports"][0]["port"] == 80 and restored["clusterIP"] == service["spec"]["clusterIP"]
    assert refs(report, "pruned") == [] and difference(report) == {"missing": [], "extra": [("configmaps", "shop", "later")]}
    assert api.request("GET", "/api/v1/namespaces/shop/configmaps/settings")["data"] == {"colour": "blue", "size": "42"}
    assert api.exists("/api/v1/namespaces/shop/configmaps/later") is not None

    pruned = rb.restore(api, archive, expect_cluster=uid, manifest=manifest, prune=True)
    assert refs(pruned, "pruned") == [("configmaps", "shop", "later")] and pruned["failed"] == []
    assert difference(pruned) == {"missing": [], "extra": []}
    assert api.exists("/api/v1/namespaces/shop/configmaps/later") is None
    assert api.exists("/api/v1/namespaces/other/configmaps/misc") is not None  # out of the backup's scope


def test_a_replace_the_cluster_refuses_is_reported_with_its_reason(api):
    uid = rb.cluster_identity(api)
    archive, manifest = rb.dump(api, include_namespaces=["shop"])
    api.request("DELETE", "/apis/apps/v1/namespaces/shop/deployments/web")
    api.request("POST", "/apis/apps/v1/namespaces/shop/deployments", {
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web2"}},
                 "template": {"metadata": {"labels": {"app": "web2"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}})
    report = rb.restore(api, archive, expect_cluster=uid, manifest=manifest)
    assert [(f["resource"], f["namespace"], f["name"]) for f in report["failed"]] == [("deployments.apps", "shop", "web")]
    assert "spec.selector" in report["failed"][0]["reason"] and "immutable" in report["failed"][0]["reason"]
    assert not report["ok"] and difference(report) == {"missing": [], "extra": []}  # it is there, just not as backed up
    assert set(refs(report, "unchanged")) >= {("configmaps", "shop", "settings"), ("secrets", "shop", "creds")}


def test_a_cluster_that_stops_answering_interrupts_the_restore_with_what_was_done(api, sim):
    uid = rb.cluster_identity(api)
    archive, manifest = rb.dump(api, include_namespaces=["shop"])
    delete_shop(api)

    def cut(percent: int, message: str) -> None:
        if message.startswith("customresourcedefinitions"):
            sim.set_online(A, False)

    try:
        with pytest.raises(rb.RestoreInterrupted, match="stopped answering during the restore") as exc:
            rb.restore(api, archive, expect_cluster=uid, manifest=manifest, progress=cut)
    finally:
        sim.set_online(A, True)
    assert refs(exc.value.report, "created") == [("namespaces", "", "shop"),
                                        ("customresourcedefinitions.apiextensions.k8s.io", "", CRD)]
    report = rb.restore(api, archive, expect_cluster=uid, manifest=manifest)  # run again: it completes
    assert report["ok"] and ("namespaces", "", "shop") in refs(report, "unchanged")


def test_service_account_tokens_are_kept_only_while_they_can_work(api):
    """A legacy token names its account's uid: kept when the account is the same, else left for the
    token controller to mint again (the old one would be refused)."""
    uid = rb.cluster_identity(api)
    account = api.request("POST", "/api/v1/namespaces/shop/serviceaccounts", {"metadata": {"name": "robot"}})
    api.request("POST", "/api/v1/namespaces/shop/secrets", {
        "metadata": {"name": "robot-token", "annotations": {
            "kubernetes.io/service-account.name": "robot",
            "kubernetes.io/service-account.uid": account["metadata"]["uid"]}},
        "type": "kubernetes.io/service-account-token",
        "data": {"token": base64.b64encode(b"old.jwt").decode(), "ca.crt": base64.b64encode(b"CA").decode()}})
    archive, manifest = rb.dump(api, include_namespaces=["shop"])

    api.request("DELETE", "/api/v1/namespaces/shop/secrets/robot-token")
    rb.restore(api, archive, expect_cluster=uid, manifest=manifest)
    same = api.request("GET", "/api/v1/namespaces/shop/secrets/robot-token")
    assert same["metadata"]["annotations"]["kubernetes.io/service-account.uid"] == account["metadata"]["uid"]
    assert base64.b64decode(same["data"]["token"]) == b"old.jwt"  # the account is the same one: its token still works

    delete_shop(api)
    report = rb.restore(api, archive, expect_cluster=uid, manifest=manifest)
    assert report["ok"]
    fresh = api.request("GET", "/api/v1/namespaces/shop/secrets/robot-token")
    account = api.request("GET", "/api/v1/namespaces/shop/serviceaccounts/robot")
    # The old token named the deleted account: it was not restored; the token controller mints one for the new account.
    assert fresh["metadata"]["annotations"].get("kubernetes.io/service-account.uid") in (None, account["metadata"]["uid"])
    assert base64.b64decode(fresh["data"].get("token", "")) != b"old.jwt"


def only(archive: bytes, keep) -> tuple[bytes, dict]:
    """The archive as if the cluster had held only the objects ``keep`` accepts when it was taken."""
    doc = document(archive)
    doc["objects"] = [e for e in doc["objects"] if keep(e)]
    inner = doc["manifest"]
    inner["inventory"] = [r for r in inner["inventory"]
                          if any(e["resource"] == r[0] and e["object"]["metadata"]["name"] == r[2]
                                 and e["object"]["metadata"].get("namespace", "") == r[1] for e in doc["objects"])]
    inner["objects"] = len(doc["objects"])
    inner["counts"] = {k: sum(1 for e in doc["objects"] if e["resource"] == k)
                       for k in {e["resource"] for e in doc["objects"]}}
    inner["content_sha256"] = rb._content_sha256(doc["resources"], doc["objects"])
    data = gzip.compress(json.dumps(doc).encode())
    return data, {**inner, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_prune_never_deletes_system_namespaces(api):
    uid = rb.cluster_identity(api)
    full, _ = rb.dump(api, include_kinds=["namespaces"])
    archive, manifest = only(full, lambda e: e["object"]["metadata"]["name"] == "other")
    assert manifest["inventory"] == [["namespaces", "", "other"]]
    api.request("POST", "/api/v1/namespaces", {"metadata": {"name": "newcomer"}})
    try:
        report = rb.restore(api, archive, expect_cluster=uid, manifest=manifest, prune=True)
        assert report["failed"] == []
        assert sorted(refs(report, "pruned")) == [("namespaces", "", "newcomer"), ("namespaces", "", "shop")]
        for ns in rb.PROTECTED_NAMESPACES:
            assert api.exists(f"/api/v1/namespaces/{ns}") is not None
        assert difference(report) == {"missing": [], "extra": sorted(("namespaces", "", ns) for ns in rb.PROTECTED_NAMESPACES)}
    finally:
        delete_namespace(api, "newcomer")


# ---------------------------------------------------------------------- filters
def test_namespace_and_kind_filters(api, monkeypatch):
    everything = set(rb.inventory(api))
    monkeypatch.setattr(rb, "PAGE", 2)
    assert set(rb.inventory(api)) == everything  # page by page (continue tokens), the same
    monkeypatch.undo()
    assert ("configmaps", "other", "misc") in everything and ("secrets", "shop", "creds") in everything
    assert ("customresourcedefinitions.apiextensions.k8s.io", "", CRD) in everything
    assert not {r for r in everything if r[0] in rb.VOLATILE}  # no events, leases, nodes, endpoints
    assert not {r for r in everything if r[0] in ("replicasets.apps", "controllerrevisions.apps")}
    assert {r for r in everything if r[0] == "pods" and r[1] == "shop"} == {("pods", "shop", "debug")}

    shop = set(rb.inventory(api, include_namespaces=["shop"]))
    assert {r[1] for r in shop} == {"shop", ""}
    assert {r for r in shop if not r[1]} == {("namespaces", "", "shop"),
                                             ("customresourcedefinitions.apiextensions.k8s.io", "", CRD)}
    assert not {r for r in shop if r[0].startswith("clusterrole")}

    not_shop = set(rb.inventory(api, exclude_namespaces=["shop"]))
    assert not {r for r in not_shop if r[1] == "shop" or r == ("namespaces", "", "shop")}
    assert ("configmaps", "other", "misc") in not_shop and ("namespaces", "", "other") in not_shop

    for spelling in ("configmaps", "ConfigMap", "configmap"):
        only = set(rb.inventory(api, include_kinds=[spelling], include_namespaces=["shop", "other"]))
        assert only == {("configmaps", "shop", "settings"), ("configmaps", "other", "misc")}, spelling
    assert {r[0] for r in rb.inventory(api, include_kinds=["deployments.apps", "Widget"])} \
        == {"deployments.apps", "widgets.example.com", "customresourcedefinitions.apiextensions.k8s.io"}

    fewer = set(rb.inventory(api, include_namespaces=["shop"], exclude_kinds=["secrets", "Widget", "Deployment"]))
    assert {r[0] for r in fewer} == {"namespaces", "configmaps", "serviceaccounts", "pods", "services"}  # no CRD

    events = rb.inventory(api, include_kinds=["events"])  # volatile, but asked for by name
    assert events and {r[0] for r in events} == {"events"}

    archive, manifest = rb.dump(api, include_namespaces=["shop"], exclude_kinds=["secrets"])
    assert not [e for e in document(archive)["objects"] if e["resource"] == "secrets"]
    assert manifest["filters"]["exclude_kinds"] == ["secrets"]


def test_diff_ignores_volatile_kinds():
    expected = [["configmaps", "a", "x"], ["events", "a", "e1"], ["secrets", "a", "s"]]
    actual = [("configmaps", "a", "x"), ("events", "a", "e2"), ("leases.coordination.k8s.io", "a", "l"),
              ("configmaps", "a", "new")]
    assert rb.diff(expected, actual) == {"missing": [("secrets", "a", "s")], "extra": [("configmaps", "a", "new")]}
    assert rb.diff(expected, actual, ignore=())["missing"] == [("events", "a", "e1"), ("secrets", "a", "s")]


# ---------------------------------------------------------------------- refusing bad archives
def test_tampered_or_foreign_archives_are_refused_and_nothing_changes(api, sim):
    uid = rb.cluster_identity(api)
    archive, manifest = rb.dump(api, cluster_name=A, include_namespaces=["shop"])
    assert rb.verify(archive, manifest, expect_cluster=uid) == manifest
    assert rb.verify(archive, None, expect_cluster=uid) == manifest
    delete_shop(api)

    other = ClusterApi(sim.kubeconfig(B))
    try:
        foreign, foreign_manifest = rb.dump(other, cluster_name=B)
        other_uid = rb.cluster_identity(other)
    finally:
        other.close()
    assert other_uid != uid

    flipped = bytearray(archive)
    flipped[len(flipped) // 2] ^= 0x01
    truncated = archive[: len(archive) * 2 // 3]
    # A document altered consistently inside a valid gzip: only the content checksum can tell.
    doc = document(archive)
    next(e for e in doc["objects"] if e["resource"] == "secrets")["object"]["data"]["password"] = "aGFja2Vk"
    rewritten = gzip.compress(json.dumps(doc).encode())
    altered_manifest = copy.deepcopy(manifest)
    altered_manifest["inventory"] = altered_manifest["inventory"][:-1]

    cases = [
        (bytes(flipped), manifest, "SHA-256"),
        (bytes(flipped), None, "gzip|checksum|JSON"),
        (truncated, manifest, "truncated"),
        (truncated, None, "truncated"),
        (rewritten, None, "checksum"),
        (foreign, foreign_manifest, "belongs to cluster"),
        (foreign, None, "taken of cluster"),
        (archive, altered_manifest, "does not describe this archive"),
        (b"", None, "empty"),
        (b"not gzip at all", None, "not a valid gzip"),
    ]
    api.calls.clear()
    for bad, bad_manifest, reason in cases:
        with pytest.raises(rb.BackupError, match=reason):
            rb.verify(bad, bad_manifest, expect_cluster=uid)
        with pytest.raises(rb.BackupError, match=reason):
            rb.restore(api, bad, expect_cluster=uid, manifest=bad_manifest)
    assert api.calls == []  # refused before the cluster was even asked

    # A good archive of A, restored onto B (expecting A) or with B expected: refused, B untouched.
    on_b = RecordingApi(sim.kubeconfig(B))
    try:
        with pytest.raises(rb.BackupError, match="This is cluster"):
            rb.restore(on_b, archive, expect_cluster=uid, manifest=manifest)
        with pytest.raises(rb.BackupError, match="taken of cluster|belongs to cluster"):
            rb.restore(on_b, archive, expect_cluster=other_uid)
        assert on_b.writes() == []
    finally:
        on_b.close()
    assert api.exists("/api/v1/namespaces/shop") is None
    assert api.exists(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD}") is None


def test_secret_data_survives_the_round_trip(api):
    uid = rb.cluster_identity(api)
    tls = {"tls.crt": base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n").decode(),
           "tls.key": base64.b64encode(SECRET_BYTES[::-1]).decode()}
    api.request("POST", "/api/v1/namespaces/shop/secrets",
                {"metadata": {"name": "cert", "labels": {"k": "v"}}, "type": "kubernetes.io/tls", "data": tls})
    archive, manifest = rb.dump(api, include_namespaces=["shop"], include_kinds=["secrets"])
    assert {tuple(r) for r in manifest["inventory"]} == {("secrets", "shop", "creds"), ("secrets", "shop", "cert")}
    api.request("DELETE", "/api/v1/namespaces/shop/secrets/cert")
    api.request("DELETE", "/api/v1/namespaces/shop/secrets/creds")

    report = rb.restore(api, archive, expect_cluster=uid, manifest=manifest)
    assert sorted(refs(report, "created")) == [("secrets", "shop", "cert"), ("secrets", "shop", "creds")]
    cert = api.request("GET", "/api/v1/namespaces/shop/secrets/cert")
    assert cert["type"] == "kubernetes.io/tls" and cert["data"] == tls and cert["metadata"]["labels"] == {"k": "v"}
    creds = api.request("GET", "/api/v1/namespaces/shop/secrets/creds")["data"]
    assert base64.b64decode(creds["blob"]) == SECRET_BYTES and base64.b64decode(creds["password"]) == b"s3cr3t\n"


def test_owner_references_point_at_the_restored_owner(api):
    """An owned object the backup holds gets its owner's new uid (else the garbage collector takes it)."""
    uid = rb.cluster_identity(api)
    widget = api.request("GET", "/apis/example.com/v1/namespaces/shop/widgets/gizmo")
    ref = {"apiVersion": "example.com/v1", "kind": "Widget", "name": "gizmo", "uid": widget["metadata"]["uid"],
           "controller": True}
    api.request("POST", "/api/v1/namespaces/shop/configmaps",
                {"metadata": {"name": "gizmo-state", "ownerReferences": [ref]}, "data": {"teeth": "12"}})
    archive, manifest = rb.dump(api, include_namespaces=["shop"])
    delete_shop(api)
    report = rb.restore(api, archive, expect_cluster=uid, manifest=manifest)
    assert report["failed"] == [] and difference(report) == {"missing": [], "extra": []}
    new_widget = api.request("GET", "/apis/example.com/v1/namespaces/shop/widgets/gizmo")
    state = api.request("GET", "/api/v1/namespaces/shop/configmaps/gizmo-state")
    assert state["metadata"]["ownerReferences"][0]["uid"] == new_widget["metadata"]["uid"] != ref["uid"]
    assert refs(report, "created").index(("configmaps", "shop", "gizmo-state")) \
        > refs(report, "created").index(("widgets.example.com", "shop", "gizmo"))
