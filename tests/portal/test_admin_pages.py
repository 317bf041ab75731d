"""The admin: branded home with counts and recent jobs, job pages with progress and log."""
from __future__ import annotations

import pytest

from clusters.models import Cluster
from portal.models import Job, JobLogLine

pytestmark = pytest.mark.django_db


def test_home_shows_counts_and_recent_jobs(client, admin_user):
    Cluster.objects.create(name="alpha", kubeconfig="x", state="active")
    Cluster.objects.create(name="beta", kubeconfig="x", state="unavailable")
    Job.objects.create(kind="portal.diagnose", target_repr="selftest", created_by=admin_user, status="running")
    client.force_login(admin_user)
    page = client.get("/admin/").content.decode()
    assert "Corral" in page
    assert "Recent jobs" in page
    assert "portal.diagnose selftest" in page
    assert page.count("corral-card") >= 6


def test_job_page_shows_progress_bar_log_and_cancel(client, admin_user):
    job = Job.objects.create(kind="portal.diagnose", created_by=admin_user, status="running", progress=40,
                             progress_message="step 2 of 5")
    JobLogLine.objects.create(job=job, message="step 1 of 5")
    client.force_login(admin_user)
    page = client.get(f"/admin/portal/job/{job.pk}/change/").content.decode()
    assert 'id="job-bar" style="width:40%"' in page
    assert "step 1 of 5" in page
    assert "Cancel job" in page
    response = client.post(f"/admin/portal/job/{job.pk}/cancel/")
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.cancel_requested


def test_job_list_filters(client, admin_user):
    Job.objects.create(kind="portal.diagnose", status="failed")
    Job.objects.create(kind="portal.prune_jobs", status="succeeded")
    client.force_login(admin_user)
    page = client.get("/admin/portal/job/?status__exact=failed").content.decode()
    assert "1 result" in page and "2 total" in page
    assert page.count('<th class="field-kind">') == 1


def test_other_users_job_page_is_404(client, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    job = Job.objects.create(kind="portal.diagnose", created_by=bob)
    client.force_login(alice)
    assert client.get(f"/admin/portal/job/{job.pk}/change/").status_code == 404
    assert client.post(f"/admin/portal/job/{job.pk}/cancel/").status_code == 404


def test_cluster_page_shows_nodes_and_projects_to_a_cluster_owner_who_is_not_superuser(client):
    from clusters.models import Node
    from tests.tenancy import make_tenant

    a, b = make_tenant("pa"), make_tenant("pb")
    Node.objects.create(cluster=a.cluster, name="pa-worker-1", roles=["worker"], ready=True)
    Node.objects.create(cluster=b.cluster, name="pb-worker-1", roles=["worker"], ready=True)
    client.force_login(a.owner)
    page = client.get(f"/admin/clusters/cluster/{a.cluster.pk}/change/").content.decode()
    assert "pa-worker-1" in page and "pa-project" in page
    assert "pb-worker-1" not in page and "pb-project" not in page


def test_job_page_shows_status_only_in_the_live_block(client, admin_user):
    """The static fields used to say "Queued" under a live badge saying "running"."""
    job = Job.objects.create(kind="portal.diagnose", created_by=admin_user, status="queued")
    client.force_login(admin_user)
    page = client.get(f"/admin/portal/job/{job.pk}/change/").content.decode()
    assert 'id="job-status"' in page
    assert "field-status" not in page and "field-progress_message" not in page
    assert page.count(">Queued<") == 1
