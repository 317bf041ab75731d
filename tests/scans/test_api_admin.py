"""Scans through the API and admin: start one, read the report, download it; other tenants see nothing."""
from __future__ import annotations

import csv
import io

from rest_framework.test import APIClient

from clusters.models import Cluster
from rbac.models import ClusterRoleBinding, RoleTemplate
from scans.models import Scan


def _client(user) -> APIClient:
    c = APIClient()
    c.force_login(user)
    return c


def test_scan_report_download_and_isolation(scan_fleet, register, run_jobs, make_user, client):
    cluster = register(scan_fleet, "kube-new")
    member, stranger = make_user("member"), make_user("stranger")
    ClusterRoleBinding.objects.create(cluster=cluster, role=RoleTemplate.objects.get(name="cluster-member"), user=member)
    me = _client(member)

    # A user of another tenant can neither see nor scan the cluster, nor read its reports.
    other = _client(stranger)
    assert other.post(f"/v3/clusters/{cluster.pk}/scan/", {}, format="json").status_code == 404
    r = me.post(f"/v3/clusters/{cluster.pk}/scan/", {}, format="json")
    assert r.status_code == 202, r.content
    body = r.json()
    assert body["profile_name"] == "cis-1.8-permissive" and body["job"] and body["state"] == "queued"
    assert me.post(f"/v3/clusters/{cluster.pk}/scan/", {}, format="json").status_code == 409  # one at a time
    run_jobs()
    scan = Scan.objects.get(pk=body["id"])
    assert scan.state == "failed"
    for url in (f"/v3/scans/{scan.pk}/", f"/v3/scans/{scan.pk}/results/", f"/v3/scans/{scan.pk}/download/csv/",
                f"/admin/scans/scan/{scan.pk}/report/"):
        assert (other if url.startswith("/v3") else _logged(client, stranger)).get(url).status_code == 404, url
    assert str(scan.pk) not in str(other.get("/v3/scans/").json())

    detail = me.get(f"/v3/scans/{scan.pk}/").json()
    assert detail["counts"]["total"] == 130 and detail["sections"] and detail["capabilities"] == {"view": True, "delete": False}
    fails = me.get(f"/v3/scans/{scan.pk}/results/?result=fail&page_size=500").json()["results"]
    assert fails and all(r["result"] == "fail" and r["remediation"] for r in fails)
    assert me.delete(f"/v3/scans/{scan.pk}/").status_code == 403  # members may not delete reports

    rows = list(csv.DictReader(io.StringIO(me.get(f"/v3/scans/{scan.pk}/download/csv/").content.decode())))
    assert len(rows) == 130 and {r["result"] for r in rows} >= {"pass", "fail", "skip", "warn"}
    doc = me.get(f"/v3/scans/{scan.pk}/download/json/").json()
    assert doc["counts"] == scan.counts and doc["raw"]["kube_bench"][0]["output"]

    page = _logged(client, member).get(f"/admin/scans/scan/{scan.pk}/report/?result=fail")
    html = page.content.decode()
    assert page.status_code == 200 and "<svg" in html and "Download CSV" in html
    assert "1.2.16" in html and "5.1.9" not in html  # the filter keeps failures only
    assert _logged(client, member).get(f"/admin/scans/scan/{scan.pk}/download/json/").status_code == 200


def _logged(client, user):
    client.force_login(user)
    return client


def test_users_make_profiles_that_skip_with_reasons(admin_api):
    r = admin_api.post("/v3/scan-profiles/", {"name": "ours", "benchmark": "cis-1.8",
                                              "skips": {"1.2.16": "profiling needed by our APM"}}, format="json")
    assert r.status_code == 201, r.content
    bad = admin_api.post("/v3/scan-profiles/", {"name": "bad", "benchmark": "cis-1.8", "skips": {"9.9.9": "x"}},
                         format="json")
    assert bad.status_code == 400 and "9.9.9" in str(bad.json())
    no_reason = admin_api.post("/v3/scan-profiles/", {"name": "bad", "benchmark": "cis-1.8", "skips": {"1.2.2": " "}},
                               format="json")
    assert no_reason.status_code == 400 and "1.2.2" in str(no_reason.json())
    builtin = admin_api.get("/v3/scan-profiles/?name=cis-1.8-hardened").json()["results"][0]
    assert builtin["builtin"] is True
    assert admin_api.patch(f"/v3/scan-profiles/{builtin['id']}/", {"description": "x"}, format="json").status_code == 400


def _plain_cluster(name: str = "plain") -> Cluster:
    """A cluster in the inventory; starting a scan queues a job and contacts nothing."""
    return Cluster.objects.create(name=name, kind="imported", kubernetes_version="v1.27.3", state="active",
                                  kubeconfig="")


def _bind(cluster, user, role: str, permissions: list[str] | None = None) -> None:
    template = RoleTemplate.objects.get_or_create(name=role, defaults={"context": "cluster",
                                                                       "permissions": permissions or []})[0]
    ClusterRoleBinding.objects.create(cluster=cluster, role=template, user=user)


def test_capabilities_scan_says_whether_a_scan_may_start(db, make_user):
    """``capabilities.scan`` follows the rule the scan itself enforces (``scan.scan`` in the cluster), so a client
    shows the button exactly to those whose scan would start."""
    cluster = _plain_cluster()
    member, viewer, cluster_scan_only = make_user("member"), make_user("viewer"), make_user("cluster-scan-only")
    _bind(cluster, member, "cluster-member")  # built-in: scan.scan, but no cluster.scan
    _bind(cluster, viewer, "scan-viewer", ["cluster.view", "scan.view"])
    _bind(cluster, cluster_scan_only, "cluster-scanner", ["cluster.view", "cluster.scan"])  # not the scan rule

    for user, may in ((member, True), (viewer, False), (cluster_scan_only, False)):
        client = _client(user)
        caps = client.get(f"/v3/clusters/{cluster.pk}/").json()["capabilities"]
        listed = next(c for c in client.get("/v3/clusters/").json()["results"] if c["id"] == cluster.pk)
        assert caps["scan"] is may and listed["capabilities"]["scan"] is may, user
        assert caps["view"] is True and caps["change"] is False
        r = client.post(f"/v3/clusters/{cluster.pk}/scan/", {}, format="json")
        assert r.status_code == (202 if may else 403), (user, r.content)
    assert Scan.objects.filter(cluster=cluster).count() == 1
    assert _client(make_user("stranger")).get(f"/v3/clusters/{cluster.pk}/").status_code == 404


def test_run_a_scan_button_on_the_cluster_page(db, admin_user, make_user, client):
    """The cluster's admin page has "Run a scan": the scans app's run page with that cluster chosen. An admin
    starts the scan there; a user who may see the cluster but not scan it gets no button and no scan."""
    cluster = _plain_cluster()
    change = f"/admin/clusters/cluster/{cluster.pk}/change/"
    run = f"/admin/scans/scan/run/?cluster={cluster.pk}"

    client.force_login(admin_user)
    page = client.get(change).content.decode()
    assert f'href="{run}"' in page and "Run a scan" in page
    form = client.get(run)
    assert form.status_code == 200 and f'<option value="{cluster.pk}" selected>' in form.content.decode()
    r = client.post("/admin/scans/scan/run/", {"cluster": cluster.pk, "profile": ""})
    scan = Scan.objects.get(cluster=cluster)
    assert r.status_code == 302 and r["Location"] == f"/admin/portal/job/{scan.job_id}/change/"
    assert scan.profile_name == "cis-1.8-permissive" and scan.created_by == admin_user and scan.state == "queued"
    scan.delete()

    viewer = make_user("viewer")
    _bind(cluster, viewer, "scan-viewer", ["cluster.view", "scan.view"])
    client.force_login(viewer)
    page = client.get(change)
    assert page.status_code == 200 and "Run a scan" not in page.content.decode()
    r = client.post("/admin/scans/scan/run/", {"cluster": cluster.pk, "profile": ""}, follow=True)
    assert r.status_code == 200 and "You may not scan" in r.content.decode()
    assert not Scan.objects.filter(cluster=cluster).exists()
