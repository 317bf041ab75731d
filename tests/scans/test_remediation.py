"""The remediation loop: a cluster fails a Pod Security check and an API-server flag check; both are fixed
through the Kubernetes API; the next scan shows both Pass, and the comparison lists them."""
from __future__ import annotations

import time

import yaml
from kubernetes import client as k8s

from clusters import kube
from scans import services
from scans.models import Scan, ScanProfile


def _scan(cluster, run_jobs, user) -> Scan:
    scan = services.request_scan(cluster, ScanProfile.objects.get(name="cis-1.8-hardened"), user=user)
    run_jobs()
    scan.refresh_from_db()
    return scan


def test_fix_the_cluster_scan_again_the_checks_turn_pass(scan_fleet, register, run_jobs, admin_user, client):
    cluster = register(scan_fleet, "kube-new")
    api = kube.api_client(scan_fleet.kubeconfig("kube-new"))
    core = k8s.CoreV1Api(api)
    core.create_namespaced_pod("default", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug-shell"},
        "spec": {"containers": [{"name": "sh", "image": "busybox", "securityContext": {"privileged": True}}]}})

    before = _scan(cluster, run_jobs, admin_user)
    results = {r.check_id: r for r in before.results.all()}
    assert results["5.2.2"].result == "fail" and "pod default/debug-shell" in results["5.2.2"].evidence["running"]
    assert results["1.2.16"].result == "fail"
    assert "--profiling=false" in results["1.2.16"].remediation

    # Fix both through the Kubernetes API: enforce the baseline level where the privileged pod ran (and remove
    # it), and give the API server --profiling=false in the config its static pod manifest is rendered from.
    core.delete_namespaced_pod("debug-shell", "default", grace_period_seconds=0)
    core.patch_namespace("default", {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}})
    config = core.read_namespaced_config_map("kubeadm-config", "kube-system")
    doc = yaml.safe_load(config.data["ClusterConfiguration"])
    doc["apiServer"]["extraArgs"]["profiling"] = "false"
    core.patch_namespaced_config_map("kubeadm-config", "kube-system",
                                     {"data": {"ClusterConfiguration": yaml.safe_dump(doc)}})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the kubelet replaces the mirror pod with the new flags
        pods = core.list_namespaced_pod("kube-system", label_selector="component=kube-apiserver").items
        names = [p.metadata.name for p in pods]
        if pods and all("--profiling=false" in p.spec.containers[0].command for p in pods) and \
                "debug-shell" not in [p.metadata.name for p in core.list_namespaced_pod("default").items]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the fix did not reach the cluster: {names}")
    api.close()

    after = _scan(cluster, run_jobs, admin_user)
    now = {r.check_id: r.result for r in after.results.all()}
    assert now["5.2.2"] == "pass" and now["1.2.16"] == "pass"
    assert after.passed > before.passed

    client.force_login(admin_user)
    diff = client.get(f"/v3/scans/{after.pk}/compare/?with={before.pk}").json()
    turned = {c["check_id"] for c in diff["turned_pass"]}
    assert {"5.2.2", "1.2.16"} <= turned
    page = client.get(f"/admin/scans/scan/{after.pk}/compare/?with={before.pk}")
    assert page.status_code == 200 and "5.2.2" in page.content.decode() and "1.2.16" in page.content.decode()
