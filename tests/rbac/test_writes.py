"""Generated write tests: every write route of the API, for each built-in role.

For each route a case makes the write as the actor of :mod:`tests.rbac.writes` and says, from
the permission table, whether it must be allowed; the test then checks the answer and the
database (allowed: 2xx and the change is there; refused: 403/404 and nothing changed). A write
route of the router without a case fails :func:`test_every_write_route_has_a_case`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from backups.models import BackupTarget, Restore, Snapshot
from clusters.models import Cluster, ClusterConfigVersion, Project, Upgrade
from portal.api.urls import router
from portal.models import ApiToken, Job
from rbac.models import (
    ClusterRoleBinding,
    GlobalRole,
    GlobalRoleBinding,
    Group,
    ProjectRoleBinding,
    RoleTemplate,
)
from tests.rbac.writes import ROLES, World, deletion_queued, fleet_target, make_world, own_token, queued_job
from tests.tenancy import UNREACHABLE_S3, backup_target, ready_snapshot


@dataclass
class Outcome:
    expected: bool  # what the permission table says
    response: object
    changed: bool | None  # what the database shows (None: not observable, the status decides)
    allowed_status: tuple[int, ...] = (200, 201, 202, 204)
    refused_status: tuple[int, ...] = (403, 404)


CASES: dict[str, Callable[[World, APIClient], Outcome]] = {}


def case(*routes: str):
    def wrap(fn):
        for route in routes:
            CASES[route] = fn
        return fn

    return wrap


# --- clusters ------------------------------------------------------------------------------------------

@case("clusters.create")
def cluster_create(w: World, c: APIClient) -> Outcome:
    before = Cluster.objects.count()
    r = c.post("/v3/clusters/", {"name": "new-one", "kubeconfig": "clusters: [unclosed"}, format="json")
    # An allowed import reaches the kubeconfig check (400, nothing contacted); a refused one stops at 403.
    return Outcome(w.may("cluster.add"), r, Cluster.objects.count() != before, allowed_status=(400,))


@case("clusters.update", "clusters.partial_update")
def cluster_update(w: World, c: APIClient) -> Outcome:
    r = c.patch(f"/v3/clusters/{w.a.cluster.pk}/", {"description": "changed"}, format="json")
    changed = Cluster.objects.get(pk=w.a.cluster.pk).description == "changed"
    return Outcome(w.may("cluster.change", w.a.cluster), r, changed)


@case("clusters.destroy")
def cluster_delete(w: World, c: APIClient) -> Outcome:
    r = c.delete(f"/v3/clusters/{w.a.cluster.pk}/")
    return Outcome(w.may("cluster.delete", w.a.cluster), r, not Cluster.objects.filter(pk=w.a.cluster.pk).exists())


def _config(w: World, version: str, *, kubelet: bool = False) -> dict:
    """The config in force with another version, or new kubelet arguments, or (neither) drain turned on."""
    from clusters import config as cluster_config

    doc = dict(cluster_config.current_document(w.a.cluster))
    doc["kubernetes_version"] = version
    if kubelet:
        doc["services"] = {"kubelet": {"extra_args": {"max-pods": "250"}}}
    else:
        doc["upgrade_strategy"] = {**doc.get("upgrade_strategy", {}), "drain": True}
    return {"document": doc}


@case("clusters.put_config")
def cluster_config_put(w: World, c: APIClient) -> Outcome:
    before = ClusterConfigVersion.objects.filter(cluster=w.a.cluster).count()
    r = c.put(f"/v3/clusters/{w.a.cluster.pk}/config/", _config(w, "v1.15.11"), format="json")
    changed = ClusterConfigVersion.objects.filter(cluster=w.a.cluster).count() != before
    return Outcome(w.may("cluster.change", w.a.cluster), r, changed)


@case("clusters.put_config+kubelet")
def cluster_config_put_kubelet(w: World, c: APIClient) -> Outcome:
    """New kubelet arguments are rolled to the nodes (kubelets restart): ``cluster.upgrade`` too."""
    before = ClusterConfigVersion.objects.filter(cluster=w.a.cluster).count()
    r = c.put(f"/v3/clusters/{w.a.cluster.pk}/config/", _config(w, "v1.15.11", kubelet=True), format="json")
    changed = ClusterConfigVersion.objects.filter(cluster=w.a.cluster).count() != before
    expected = w.may("cluster.change", w.a.cluster) and w.may("cluster.upgrade", w.a.cluster)
    return Outcome(expected, r, changed)


@case("clusters.put_config+upgrade")
def cluster_config_put_upgrade(w: World, c: APIClient) -> Outcome:
    """A config that changes the Kubernetes version is an upgrade: it needs ``cluster.upgrade`` too."""
    before = ClusterConfigVersion.objects.filter(cluster=w.a.cluster).count()
    r = c.put(f"/v3/clusters/{w.a.cluster.pk}/config/", _config(w, "v1.16.8"), format="json")
    changed = (ClusterConfigVersion.objects.filter(cluster=w.a.cluster).count() != before
               or Upgrade.objects.filter(cluster=w.a.cluster).exists())
    if changed:
        assert Upgrade.objects.filter(cluster=w.a.cluster, to_version="v1.16.8").exists()
    expected = w.may("cluster.change", w.a.cluster) and w.may("cluster.upgrade", w.a.cluster)
    return Outcome(expected, r, changed)


@case("clusters.sync")
def cluster_sync(w: World, c: APIClient) -> Outcome:
    r = c.post(f"/v3/clusters/{w.a.cluster.pk}/sync/")
    changed = Job.objects.filter(kind="clusters.sync", cluster=w.a.cluster).exists()
    return Outcome(w.may("cluster.sync", w.a.cluster), r, changed)


@case("clusters.upgrade")
def cluster_upgrade(w: World, c: APIClient) -> Outcome:
    r = c.post(f"/v3/clusters/{w.a.cluster.pk}/upgrade/", {"kubernetes_version": "v1.16.8"}, format="json")
    changed = Upgrade.objects.filter(cluster=w.a.cluster).exists()
    return Outcome(w.may("cluster.upgrade", w.a.cluster), r, changed)


# --- projects ------------------------------------------------------------------------------------------

@case("projects.create")
def project_create(w: World, c: APIClient) -> Outcome:
    r = c.post("/v3/projects/", {"cluster": w.a.cluster.pk, "name": "new-project"}, format="json")
    changed = Project.objects.filter(name="new-project").exists()
    return Outcome(w.may("project.add", w.a.cluster) and w.sees_cluster(w.a.cluster), r, changed)


@case("projects.create@other-tenant")
def project_create_elsewhere(w: World, c: APIClient) -> Outcome:
    r = c.post("/v3/projects/", {"cluster": w.b.cluster.pk, "name": "planted"}, format="json")
    changed = Project.objects.filter(name="planted").exists()
    expected = w.may("project.add", w.b.cluster) and w.sees_cluster(w.b.cluster)
    # A cluster the caller cannot see is, to them, no cluster at all: the field is refused (400).
    refused = (403, 404) if w.sees_cluster(w.b.cluster) else (400, 403)
    return Outcome(expected, r, changed, allowed_status=(201,), refused_status=refused)


@case("projects.update", "projects.partial_update")
def project_update(w: World, c: APIClient) -> Outcome:
    r = c.patch(f"/v3/projects/{w.a.project.pk}/", {"description": "changed"}, format="json")
    changed = Project.objects.get(pk=w.a.project.pk).description == "changed"
    return Outcome(w.may("project.change", w.a.cluster, w.a.project), r, changed)


@case("projects.update@move")
def project_move(w: World, c: APIClient) -> Outcome:
    """Moving a project to another tenant's cluster is refused to everyone, whatever they hold."""
    r = c.patch(f"/v3/projects/{w.a.project.pk}/", {"cluster": w.b.cluster.pk}, format="json")
    moved = Project.objects.get(pk=w.a.project.pk).cluster_id == w.b.cluster.pk
    return Outcome(False, r, moved, refused_status=(400, 403, 404))


@case("projects.destroy")
def project_delete(w: World, c: APIClient) -> Outcome:
    r = c.delete(f"/v3/projects/{w.a.project.pk}/")
    gone = not Project.objects.filter(pk=w.a.project.pk).exists()
    return Outcome(w.may("project.delete", w.a.cluster, w.a.project), r, gone)


# --- directory: groups and roles -----------------------------------------------------------------------

@case("groups.create")
def group_create(w: World, c: APIClient) -> Outcome:
    r = c.post("/v3/groups/", {"name": "newcomers", "members": []}, format="json")
    return Outcome(w.may("group.add"), r, Group.objects.filter(name="newcomers").exists())


@case("groups.update", "groups.partial_update")
def group_update(w: World, c: APIClient) -> Outcome:
    group = Group.objects.create(name="plain")
    r = c.patch(f"/v3/groups/{group.pk}/", {"description": "changed"}, format="json")
    return Outcome(w.may("group.change"), r, Group.objects.get(pk=group.pk).description == "changed")


@case("groups.destroy")
def group_delete(w: World, c: APIClient) -> Outcome:
    group = Group.objects.create(name="plain")
    r = c.delete(f"/v3/groups/{group.pk}/")
    return Outcome(w.may("group.delete"), r, not Group.objects.filter(pk=group.pk).exists())


def _role_cases(prefix: str, model, resource: str, extra: dict, custom_attr: str):
    @case(f"{prefix}.create")
    def create(w: World, c: APIClient) -> Outcome:
        r = c.post(f"/v3/{prefix}/", {"name": "made", "permissions": ["cluster.view"], **extra}, format="json")
        expected = w.may(f"{resource}.add") and w.may_grant(["cluster.view"])
        return Outcome(expected, r, model.objects.filter(name="made").exists())

    @case(f"{prefix}.update", f"{prefix}.partial_update")
    def update(w: World, c: APIClient) -> Outcome:
        role = getattr(w, custom_attr)
        r = c.patch(f"/v3/{prefix}/{role.pk}/", {"description": "changed"}, format="json")
        expected = w.may(f"{resource}.change") and w.may_grant(role.permissions)
        return Outcome(expected, r, model.objects.get(pk=role.pk).description == "changed")

    @case(f"{prefix}.destroy")
    def delete(w: World, c: APIClient) -> Outcome:
        role = getattr(w, custom_attr)
        r = c.delete(f"/v3/{prefix}/{role.pk}/")
        return Outcome(w.may(f"{resource}.delete"), r, not model.objects.filter(pk=role.pk).exists())


_role_cases("globalroles", GlobalRole, "globalrole", {}, "custom_global")
_role_cases("roletemplates", RoleTemplate, "roletemplate", {"context": "cluster"}, "custom_template")


# --- bindings ------------------------------------------------------------------------------------------

@case("globalrolebindings.create")
def grb_create(w: World, c: APIClient) -> Outcome:
    subject = w.a.member
    r = c.post("/v3/globalrolebindings/", {"role": w.custom_global.pk, "user": subject.pk}, format="json")
    expected = w.may("globalrolebinding.add") and w.may("user.view") and w.may_grant(w.custom_global.permissions)
    return Outcome(expected, r, GlobalRoleBinding.objects.filter(role=w.custom_global, user=subject).exists())


@case("globalrolebindings.update", "globalrolebindings.partial_update")
def grb_update(w: World, c: APIClient) -> Outcome:
    binding = GlobalRoleBinding.objects.create(role=w.custom_global, user=w.a.member)
    other = GlobalRole.objects.create(name="viewer-2", permissions=["node.view"])
    r = c.patch(f"/v3/globalrolebindings/{binding.pk}/", {"role": other.pk}, format="json")
    expected = w.may("globalrolebinding.change") and w.may_grant(other.permissions)
    return Outcome(expected, r, GlobalRoleBinding.objects.get(pk=binding.pk).role_id == other.pk)


@case("globalrolebindings.destroy")
def grb_delete(w: World, c: APIClient) -> Outcome:
    binding = GlobalRoleBinding.objects.create(role=w.custom_global, user=w.a.member)
    r = c.delete(f"/v3/globalrolebindings/{binding.pk}/")
    return Outcome(w.may("globalrolebinding.delete"), r, not GlobalRoleBinding.objects.filter(pk=binding.pk).exists())


@case("clusterrolebindings.create")
def crb_create(w: World, c: APIClient) -> Outcome:
    role = RoleTemplate.objects.get(name="cluster-member")
    subject = w.a.member
    r = c.post("/v3/clusterrolebindings/", {"cluster": w.a.cluster.pk, "role": role.pk, "user": subject.pk},
               format="json")
    expected = (w.may("clusterrolebinding.add", w.a.cluster) and w.may("user.view") and w.sees_cluster(w.a.cluster)
                and w.may_grant(role.permissions, w.a.cluster))
    changed = ClusterRoleBinding.objects.filter(cluster=w.a.cluster, role=role, user=subject).exists()
    return Outcome(expected, r, changed)


@case("clusterrolebindings.update", "clusterrolebindings.partial_update")
def crb_update(w: World, c: APIClient) -> Outcome:
    binding = ClusterRoleBinding.objects.create(cluster=w.a.cluster, role=w.custom_template, user=w.a.member)
    role = RoleTemplate.objects.get(name="cluster-member")
    r = c.patch(f"/v3/clusterrolebindings/{binding.pk}/", {"role": role.pk}, format="json")
    expected = (w.may("clusterrolebinding.change", w.a.cluster) and w.may_grant(role.permissions, w.a.cluster))
    return Outcome(expected, r, ClusterRoleBinding.objects.get(pk=binding.pk).role_id == role.pk)


@case("clusterrolebindings.destroy")
def crb_delete(w: World, c: APIClient) -> Outcome:
    binding = ClusterRoleBinding.objects.create(cluster=w.a.cluster, role=w.custom_template, user=w.a.member)
    r = c.delete(f"/v3/clusterrolebindings/{binding.pk}/")
    expected = w.may("clusterrolebinding.delete", w.a.cluster)
    return Outcome(expected, r, not ClusterRoleBinding.objects.filter(pk=binding.pk).exists())


@case("projectrolebindings.create")
def prb_create(w: World, c: APIClient) -> Outcome:
    role = RoleTemplate.objects.get(name="read-only")
    subject = w.a.owner
    r = c.post("/v3/projectrolebindings/", {"project": w.a.project.pk, "role": role.pk, "user": subject.pk},
               format="json")
    expected = (w.may("projectrolebinding.add", w.a.cluster, w.a.project) and w.may("user.view")
                and w.may_grant(role.permissions, w.a.cluster, w.a.project))
    changed = ProjectRoleBinding.objects.filter(project=w.a.project, role=role, user=subject).exists()
    return Outcome(expected, r, changed)


@case("projectrolebindings.update", "projectrolebindings.partial_update")
def prb_update(w: World, c: APIClient) -> Outcome:
    binding = ProjectRoleBinding.objects.create(project=w.a.project, role=RoleTemplate.objects.get(name="read-only"),
                                                user=w.a.owner)
    role = RoleTemplate.objects.get(name="project-member")
    r = c.patch(f"/v3/projectrolebindings/{binding.pk}/", {"role": role.pk}, format="json")
    expected = (w.may("projectrolebinding.change", w.a.cluster, w.a.project)
                and w.may_grant(role.permissions, w.a.cluster, w.a.project))
    return Outcome(expected, r, ProjectRoleBinding.objects.get(pk=binding.pk).role_id == role.pk)


@case("projectrolebindings.destroy")
def prb_delete(w: World, c: APIClient) -> Outcome:
    binding = ProjectRoleBinding.objects.create(project=w.a.project, role=RoleTemplate.objects.get(name="read-only"),
                                                user=w.a.owner)
    r = c.delete(f"/v3/projectrolebindings/{binding.pk}/")
    expected = w.may("projectrolebinding.delete", w.a.cluster, w.a.project)
    return Outcome(expected, r, not ProjectRoleBinding.objects.filter(pk=binding.pk).exists())


# --- tokens, jobs, upgrades, SSO -----------------------------------------------------------------------

@case("tokens.create")
def token_create(w: World, c: APIClient) -> Outcome:
    r = c.post("/v3/tokens/", {"description": "ci"}, format="json")
    return Outcome(w.may("apitoken.add"), r, ApiToken.objects.filter(user=w.actor, description="ci").exists())


@case("tokens.destroy")
def token_delete(w: World, c: APIClient) -> Outcome:
    token = own_token(w)
    r = c.delete(f"/v3/tokens/{token.pk}/")
    return Outcome(w.may("apitoken.delete"), r, not ApiToken.objects.filter(pk=token.pk).exists())


@case("tokens.destroy@other-user")
def token_delete_other(w: World, c: APIClient) -> Outcome:
    token = ApiToken.issue(w.a.owner, description="theirs")[0]
    r = c.delete(f"/v3/tokens/{token.pk}/")
    return Outcome(False, r, not ApiToken.objects.filter(pk=token.pk).exists())


@case("jobs.cancel")
def job_cancel(w: World, c: APIClient) -> Outcome:
    job = queued_job(w)
    r = c.post(f"/v3/jobs/{job.pk}/cancel/")
    job.refresh_from_db()
    changed = job.cancel_requested or job.status == Job.Status.CANCELLED
    return Outcome(w.may("job.cancel", w.a.cluster), r, changed)


@case("jobs.resume")
def job_resume(w: World, c: APIClient) -> Outcome:
    job = queued_job(w, status="paused")
    r = c.post(f"/v3/jobs/{job.pk}/resume/")
    job.refresh_from_db()
    # portal.diagnose jobs cannot be resumed: an allowed caller hears 409, a refused one 403/404.
    return Outcome(w.may("job.resume", w.a.cluster), r, None, allowed_status=(202, 200, 409))


@case("jobs.diagnose")
def job_diagnose(w: World, c: APIClient) -> Outcome:
    before = Job.objects.count()
    r = c.post("/v3/jobs/diagnose/", {"steps": 1}, format="json")
    return Outcome(w.may("*"), r, Job.objects.count() != before)


def _paused_upgrade(w: World) -> Upgrade:
    return Upgrade.objects.create(cluster=w.a.cluster, from_version="v1.15.11", to_version="v1.16.8",
                                  state=Upgrade.State.PAUSED, reason="test",
                                  job=queued_job(w, status="paused"))


@case("upgrades.resume")
def upgrade_resume(w: World, c: APIClient) -> Outcome:
    upgrade = _paused_upgrade(w)
    r = c.post(f"/v3/upgrades/{upgrade.pk}/resume/")
    changed = Upgrade.objects.get(pk=upgrade.pk).state != Upgrade.State.PAUSED
    return Outcome(w.may("cluster.upgrade", w.a.cluster), r, changed, allowed_status=(202, 409))


@case("upgrades.cancel")
def upgrade_cancel(w: World, c: APIClient) -> Outcome:
    upgrade = _paused_upgrade(w)
    r = c.post(f"/v3/upgrades/{upgrade.pk}/cancel/")
    changed = Upgrade.objects.get(pk=upgrade.pk).state != Upgrade.State.PAUSED
    return Outcome(w.may("cluster.upgrade", w.a.cluster), r, changed)


def _provider():
    from portal.models import SSOProvider

    return SSOProvider.objects.create(name="University", slug="uni")


@case("sso-providers.create")
def sso_create(w: World, c: APIClient) -> Outcome:
    from portal.models import SSOProvider

    r = c.post("/v3/sso-providers/", {"name": "Planted", "slug": "planted"}, format="json")
    return Outcome(w.may("ssoprovider.add"), r, SSOProvider.objects.filter(slug="planted").exists())


@case("sso-providers.update", "sso-providers.partial_update")
def sso_update(w: World, c: APIClient) -> Outcome:
    from portal.models import SSOProvider

    provider = _provider()
    r = c.patch(f"/v3/sso-providers/{provider.pk}/", {"name": "Changed"}, format="json")
    return Outcome(w.may("ssoprovider.change"), r, SSOProvider.objects.get(pk=provider.pk).name == "Changed")


@case("sso-providers.destroy")
def sso_delete(w: World, c: APIClient) -> Outcome:
    from portal.models import SSOProvider

    provider = _provider()
    r = c.delete(f"/v3/sso-providers/{provider.pk}/")
    return Outcome(w.may("ssoprovider.delete"), r, not SSOProvider.objects.filter(pk=provider.pk).exists())


@case("sso-providers.refresh_metadata", "sso-providers.generate_sp_key")
def sso_operations(w: World, c: APIClient) -> Outcome:
    from portal.models import SSOProvider

    provider = _provider()
    key = provider.sp_private_key
    r1 = c.post(f"/v3/sso-providers/{provider.pk}/generate_sp_key/")
    r2 = c.post(f"/v3/sso-providers/{provider.pk}/refresh_metadata/")
    changed = SSOProvider.objects.get(pk=provider.pk).sp_private_key != key
    expected = w.may("ssoprovider.change")
    if not expected:
        assert r2.status_code in (403, 404), r2.content[:300]
    return Outcome(expected, r1, changed)


@case("sso-providers.test")
def sso_test(w: World, c: APIClient) -> Outcome:
    """Trying a configuration writes nothing, but is reserved to those who may see the provider."""
    provider = _provider()
    r = c.post(f"/v3/sso-providers/{provider.pk}/test/")
    return Outcome(w.may("ssoprovider.view"), r, None, allowed_status=(200, 400))


# --- CIS scans and notifiers (issue 11) ------------------------------------------------------------------

def _profile(name: str = "mine"):
    from scans.models import ScanProfile

    return ScanProfile.objects.create(name=name, benchmark="rke-cis-1.4", skips={"1.1.11": "local images"})


def _schedule(w: World):
    from scans.models import ScanProfile, ScanSchedule

    return ScanSchedule.objects.create(cluster=w.a.cluster, profile=ScanProfile.objects.get(name="rke-cis-1.4-hardened"))


def _notifier(name: str = "ops-slack"):
    from notifiers.models import Notifier

    return Notifier.objects.create(name=name, kind="slack", slack_webhook_url="http://127.0.0.1:9/hook")


@case("clusters/<pk>/scan")
def cluster_scan(w: World, c: APIClient) -> Outcome:
    """``POST /v3/clusters/{id}/scan/``: the scan action in the cluster (cluster members hold scan.scan)."""
    from scans.models import Scan

    r = c.post(f"/v3/clusters/{w.a.cluster.pk}/scan/", {}, format="json")
    expected = w.sees_cluster(w.a.cluster) and w.may("scan.scan", w.a.cluster)
    return Outcome(expected, r, Scan.objects.filter(cluster=w.a.cluster).exists(), allowed_status=(202,))


@case("clusters/<pk>/scan@other-tenant")
def cluster_scan_elsewhere(w: World, c: APIClient) -> Outcome:
    from scans.models import Scan

    r = c.post(f"/v3/clusters/{w.b.cluster.pk}/scan/", {}, format="json")
    expected = w.sees_cluster(w.b.cluster) and w.may("scan.scan", w.b.cluster)
    return Outcome(expected, r, Scan.objects.filter(cluster=w.b.cluster).exists(), allowed_status=(202,))


@case("scan-profiles.create")
def scanprofile_create(w: World, c: APIClient) -> Outcome:
    from scans.models import ScanProfile

    r = c.post("/v3/scan-profiles/", {"name": "made", "benchmark": "cis-1.8", "skips": {"1.2.16": "why not"}},
               format="json")
    return Outcome(w.may("scanprofile.add"), r, ScanProfile.objects.filter(name="made").exists())


@case("scan-profiles.update", "scan-profiles.partial_update")
def scanprofile_update(w: World, c: APIClient) -> Outcome:
    from scans.models import ScanProfile

    profile = _profile()
    r = c.patch(f"/v3/scan-profiles/{profile.pk}/", {"description": "changed"}, format="json")
    return Outcome(w.may("scanprofile.change"), r, ScanProfile.objects.get(pk=profile.pk).description == "changed")


@case("scan-profiles.destroy")
def scanprofile_delete(w: World, c: APIClient) -> Outcome:
    from scans.models import ScanProfile

    profile = _profile()
    r = c.delete(f"/v3/scan-profiles/{profile.pk}/")
    return Outcome(w.may("scanprofile.delete"), r, not ScanProfile.objects.filter(pk=profile.pk).exists())


@case("scans.destroy")
def scan_delete(w: World, c: APIClient) -> Outcome:
    from scans.models import Scan

    scan = Scan.objects.create(cluster=w.a.cluster, benchmark="rke-cis-1.4", state="passed")
    r = c.delete(f"/v3/scans/{scan.pk}/")
    return Outcome(w.may("scan.delete", w.a.cluster), r, not Scan.objects.filter(pk=scan.pk).exists())


@case("scan-schedules.create")
def schedule_create(w: World, c: APIClient) -> Outcome:
    from scans.models import ScanProfile, ScanSchedule

    profile = ScanProfile.objects.get(name="rke-cis-1.4-hardened")
    r = c.post("/v3/scan-schedules/", {"cluster": w.a.cluster.pk, "profile": profile.pk, "cron": "0 3 * * *",
                                       "keep_last": 3}, format="json")
    expected = w.may("scan.add", w.a.cluster) and w.sees_cluster(w.a.cluster) and w.may("scanprofile.view")
    return Outcome(expected, r, ScanSchedule.objects.filter(cluster=w.a.cluster).exists())


@case("scan-schedules.create@other-tenant")
def schedule_create_elsewhere(w: World, c: APIClient) -> Outcome:
    from scans.models import ScanProfile, ScanSchedule

    profile = ScanProfile.objects.get(name="cis-1.8-hardened")
    r = c.post("/v3/scan-schedules/", {"cluster": w.b.cluster.pk, "profile": profile.pk, "cron": "0 3 * * *"},
               format="json")
    expected = w.may("scan.add", w.b.cluster) and w.sees_cluster(w.b.cluster)
    refused = (403, 404) if w.sees_cluster(w.b.cluster) else (400, 403)
    return Outcome(expected, r, ScanSchedule.objects.filter(cluster=w.b.cluster).exists(), allowed_status=(201,),
                   refused_status=refused)


@case("scan-schedules.update", "scan-schedules.partial_update")
def schedule_update(w: World, c: APIClient) -> Outcome:
    from scans.models import ScanSchedule

    schedule = _schedule(w)
    r = c.patch(f"/v3/scan-schedules/{schedule.pk}/", {"cron": "30 4 * * 1"}, format="json")
    return Outcome(w.may("scan.change", w.a.cluster), r, ScanSchedule.objects.get(pk=schedule.pk).cron == "30 4 * * 1")


@case("scan-schedules.destroy")
def schedule_delete(w: World, c: APIClient) -> Outcome:
    from scans.models import ScanSchedule

    schedule = _schedule(w)
    r = c.delete(f"/v3/scan-schedules/{schedule.pk}/")
    return Outcome(w.may("scan.delete", w.a.cluster), r, not ScanSchedule.objects.filter(pk=schedule.pk).exists())


@case("scan-alerts.create")
def alert_create(w: World, c: APIClient) -> Outcome:
    from scans.models import ScanAlert

    schedule, notifier = _schedule(w), _notifier()
    r = c.post("/v3/scan-alerts/", {"schedule": schedule.pk, "notifier": notifier.pk, "when": "always"}, format="json")
    expected = w.may("scan.add", w.a.cluster) and w.may("notifier.view")
    # A notifier the caller cannot see is, to them, no notifier at all: the field is refused (400).
    return Outcome(expected, r, ScanAlert.objects.filter(schedule=schedule).exists(), refused_status=(400, 403, 404))


@case("scan-alerts.update", "scan-alerts.partial_update")
def alert_update(w: World, c: APIClient) -> Outcome:
    from scans.models import ScanAlert

    alert = ScanAlert.objects.create(schedule=_schedule(w), notifier=_notifier(), when="failure")
    r = c.patch(f"/v3/scan-alerts/{alert.pk}/", {"when": "always"}, format="json")
    return Outcome(w.may("scan.change", w.a.cluster), r, ScanAlert.objects.get(pk=alert.pk).when == "always")


@case("scan-alerts.destroy")
def alert_delete(w: World, c: APIClient) -> Outcome:
    from scans.models import ScanAlert

    alert = ScanAlert.objects.create(schedule=_schedule(w), notifier=_notifier(), when="failure")
    r = c.delete(f"/v3/scan-alerts/{alert.pk}/")
    # The write rule: every object a write points to is one the caller may see — the notifier too.
    expected = w.may("scan.delete", w.a.cluster) and w.may("notifier.view")
    return Outcome(expected, r, not ScanAlert.objects.filter(pk=alert.pk).exists())


@case("notifiers.create")
def notifier_create(w: World, c: APIClient) -> Outcome:
    from notifiers.models import Notifier

    r = c.post("/v3/notifiers/", {"name": "made", "kind": "email", "smtp_host": "127.0.0.1", "smtp_port": 2525,
                                  "email_from": "corral@example.com", "email_to": "ops@example.com"}, format="json")
    return Outcome(w.may("notifier.add"), r, Notifier.objects.filter(name="made").exists())


@case("notifiers.update", "notifiers.partial_update")
def notifier_update(w: World, c: APIClient) -> Outcome:
    from notifiers.models import Notifier

    notifier = _notifier()
    r = c.patch(f"/v3/notifiers/{notifier.pk}/", {"description": "changed"}, format="json")
    return Outcome(w.may("notifier.change"), r, Notifier.objects.get(pk=notifier.pk).description == "changed")


@case("notifiers.destroy")
def notifier_delete(w: World, c: APIClient) -> Outcome:
    from notifiers.models import Notifier

    notifier = _notifier()
    r = c.delete(f"/v3/notifiers/{notifier.pk}/")
    return Outcome(w.may("notifier.delete"), r, not Notifier.objects.filter(pk=notifier.pk).exists())


@case("notifiers.test")
def notifier_test(w: World, c: APIClient) -> Outcome:
    """Sending a test message is a change's right; nothing listens at the URL, so an allowed try answers 409."""
    notifier = _notifier()
    r = c.post(f"/v3/notifiers/{notifier.pk}/test/")
    return Outcome(w.may("notifier.change"), r, None, allowed_status=(200, 409))


# --- backups -------------------------------------------------------------------------------------------

def _target_body(cluster: Cluster | None, name: str = "new-target") -> dict:
    return {"name": name, "cluster": cluster.pk if cluster is not None else None, "endpoint": UNREACHABLE_S3,
            "bucket": "new-bucket", "access_key": "AKIANEWACCESSKEY0001", "secret_key": "new-secret-key-0123456789"}


@case("backuptargets.create")
def target_create(w: World, c: APIClient) -> Outcome:
    r = c.post("/v3/backuptargets/", _target_body(w.a.cluster), format="json")
    expected = w.may("backuptarget.add", w.a.cluster) and w.sees_cluster(w.a.cluster)
    return Outcome(expected, r, BackupTarget.objects.filter(name="new-target").exists(), allowed_status=(201,))


@case("backuptargets.create@other-tenant")
def target_create_elsewhere(w: World, c: APIClient) -> Outcome:
    """A target pointed at tenant B's cluster (its snapshots would go to a bucket the actor holds the keys of)."""
    r = c.post("/v3/backuptargets/", _target_body(w.b.cluster, "planted"), format="json")
    expected = w.may("backuptarget.add", w.b.cluster) and w.sees_cluster(w.b.cluster)
    refused = (403, 404) if w.sees_cluster(w.b.cluster) else (400, 403)  # an invisible cluster is no cluster: 400
    return Outcome(expected, r, BackupTarget.objects.filter(name="planted").exists(), allowed_status=(201,),
                   refused_status=refused)


@case("backuptargets.create@fleet-wide")
def target_create_fleet(w: World, c: APIClient) -> Outcome:
    """A target with no cluster is the fleet's: global roles only, whatever one holds on a cluster."""
    r = c.post("/v3/backuptargets/", _target_body(None, "fleet-new"), format="json")
    return Outcome(w.may("backuptarget.add"), r, BackupTarget.objects.filter(name="fleet-new").exists(),
                   allowed_status=(201,))


@case("backuptargets.update", "backuptargets.partial_update")
def target_update(w: World, c: APIClient) -> Outcome:
    target = backup_target(w.a)
    r = c.patch(f"/v3/backuptargets/{target.pk}/", {"folder": "changed"}, format="json")
    changed = BackupTarget.objects.get(pk=target.pk).folder == "changed"
    return Outcome(w.may("backuptarget.change", w.a.cluster), r, changed)


@case("backuptargets.update@move")
def target_move(w: World, c: APIClient) -> Outcome:
    """Cluster A's target is pointed at tenant B's cluster: allowed only where both ends allow it."""
    target = backup_target(w.a)
    r = c.patch(f"/v3/backuptargets/{target.pk}/", {"cluster": w.b.cluster.pk}, format="json")
    moved = BackupTarget.objects.get(pk=target.pk).cluster_id == w.b.cluster.pk
    expected = (w.may("backuptarget.change", w.a.cluster) and w.may("backuptarget.change", w.b.cluster)
                and w.sees_cluster(w.b.cluster))
    return Outcome(expected, r, moved, refused_status=(400, 403, 404))


@case("backuptargets.update@fleet-wide")
def target_to_fleet(w: World, c: APIClient) -> Outcome:
    """Cluster A's target made fleet-wide (cluster emptied): a global write."""
    target = backup_target(w.a)
    r = c.patch(f"/v3/backuptargets/{target.pk}/", {"cluster": None}, format="json")
    changed = BackupTarget.objects.get(pk=target.pk).cluster_id is None
    expected = w.may("backuptarget.change", w.a.cluster) and w.may("backuptarget.change")
    return Outcome(expected, r, changed)


@case("backuptargets.update@fleet-target")
def fleet_target_update(w: World, c: APIClient) -> Outcome:
    target = fleet_target(w)
    r = c.patch(f"/v3/backuptargets/{target.pk}/", {"folder": "changed"}, format="json")
    changed = BackupTarget.objects.get(pk=target.pk).folder == "changed"
    return Outcome(w.may("backuptarget.change"), r, changed)


@case("backuptargets.destroy")
def target_delete(w: World, c: APIClient) -> Outcome:
    target = backup_target(w.a)
    r = c.delete(f"/v3/backuptargets/{target.pk}/")
    return Outcome(w.may("backuptarget.delete", w.a.cluster), r, not BackupTarget.objects.filter(pk=target.pk).exists())


def _snapshot_taken(w: World) -> bool:
    taken = Snapshot.objects.filter(cluster=w.a.cluster).first()
    if taken is not None:
        assert Job.objects.filter(kind="backups.snapshot", pk=taken.job_id).exists(), "a snapshot without its job"
    return taken is not None


@case("clusters.snapshot")
def cluster_snapshot(w: World, c: APIClient) -> Outcome:
    r = c.post(f"/v3/clusters/{w.a.cluster.pk}/snapshot/", {"target": None}, format="json")
    return Outcome(w.may("cluster.snapshot", w.a.cluster), r, _snapshot_taken(w), allowed_status=(202,))


@case("clusters.snapshot@target")
def cluster_snapshot_to_target(w: World, c: APIClient) -> Outcome:
    """To the cluster's own S3 target: the target must be one the actor may see as well."""
    target = backup_target(w.a)
    r = c.post(f"/v3/clusters/{w.a.cluster.pk}/snapshot/", {"target": target.name}, format="json")
    expected = w.may("cluster.snapshot", w.a.cluster) and w.may("backuptarget.view", w.a.cluster)
    if _snapshot_taken(w):
        assert Snapshot.objects.get(cluster=w.a.cluster).target_id == target.pk
    return Outcome(expected, r, _snapshot_taken(w), allowed_status=(202,))


@case("clusters.snapshot@other-tenant-target")
def cluster_snapshot_to_their_target(w: World, c: APIClient) -> Outcome:
    """Cluster A's snapshot sent to tenant B's bucket: a target of another cluster is no target of this one."""
    theirs = backup_target(w.b)
    r = c.post(f"/v3/clusters/{w.a.cluster.pk}/snapshot/", {"target": theirs.name}, format="json")
    return Outcome(False, r, _snapshot_taken(w), refused_status=(400, 403, 404))


@case("snapshots.restore")
def snapshot_restore(w: World, c: APIClient) -> Outcome:
    snapshot = ready_snapshot(w.a)
    r = c.post(f"/v3/snapshots/{snapshot.pk}/restore/", {"parts": "etcd"}, format="json")
    expected = w.may("cluster.restore", w.a.cluster) and w.may("snapshot.view", w.a.cluster)
    return Outcome(expected, r, Restore.objects.filter(snapshot=snapshot).exists(), allowed_status=(202,))


@case("snapshots.restore@other-tenant")
def snapshot_restore_elsewhere(w: World, c: APIClient) -> Outcome:
    """Tenant B's snapshot, by id."""
    snapshot = ready_snapshot(w.b)
    r = c.post(f"/v3/snapshots/{snapshot.pk}/restore/", {"parts": "etcd"}, format="json")
    expected = w.may("cluster.restore", w.b.cluster) and w.may("snapshot.view", w.b.cluster)
    return Outcome(expected, r, Restore.objects.filter(snapshot=snapshot).exists(), allowed_status=(202,))


@case("snapshots.destroy")
def snapshot_delete(w: World, c: APIClient) -> Outcome:
    snapshot = ready_snapshot(w.a)
    r = c.delete(f"/v3/snapshots/{snapshot.pk}/")
    return Outcome(w.may("snapshot.delete", w.a.cluster), r, deletion_queued(snapshot), allowed_status=(202,))


@case("snapshots.discover")
def snapshot_discover(w: World, c: APIClient) -> Outcome:
    """Reading a bucket's manifests needs ``cluster.snapshot`` and a target one may see. The bucket answers
    nothing: an allowed caller hears 409 (it cannot be reached), a refused one 403/404."""
    from unittest import mock

    target = backup_target(w.a)
    with mock.patch("backups.snapshots.cluster_identity", return_value="uid-of-cluster-a"):  # no cluster to ask
        r = c.post("/v3/snapshots/discover/", {"cluster": w.a.cluster.pk, "target": target.name}, format="json")
    expected = (w.sees_cluster(w.a.cluster) and w.may("cluster.snapshot", w.a.cluster)
                and w.may("backuptarget.view", w.a.cluster))
    if expected and r.status_code == 409:
        assert "cannot be reached" in r.json()["error"]["message"], r.content[:300]
    assert not Snapshot.objects.filter(trigger=Snapshot.Trigger.DISCOVERED).exists()
    return Outcome(expected, r, None, allowed_status=(409,))


# --- the generated tests -------------------------------------------------------------------------------

def write_routes() -> set[str]:
    """Every route of the router that writes: create/update/destroy and every non-GET @action."""
    routes = set()
    for prefix, viewset, _ in router.registry:
        for name in ("create", "update", "partial_update", "destroy"):
            if hasattr(viewset, name):
                routes.add(f"{prefix}.{name}")
        for extra in viewset.get_extra_actions():
            for method, name in extra.mapping.items():
                if method not in ("get", "head", "options"):
                    routes.add(f"{prefix}.{name}")
    return routes


def test_every_write_route_has_a_case():
    missing = sorted(write_routes() - {name.split("@")[0].split("+")[0] for name in CASES})
    assert not missing, f"write routes without a generated permission test in {__file__}: {missing}"


class _Undo(Exception):
    pass


def _judge(role: str, route: str, outcome: Outcome) -> str | None:
    status = outcome.response.status_code
    body = outcome.response.content[:300]
    if outcome.expected:
        if status not in outcome.allowed_status:
            return f"{role} should be allowed {route}: {status} {body}"
        if outcome.changed is not None and outcome.allowed_status != (400,) and not outcome.changed:
            return f"{role}: {route} answered {status} but changed nothing"
        return None
    if status not in outcome.refused_status:
        return f"{role} must be refused {route}: {status} {body}"
    if not outcome.response["Content-Type"].startswith("application/json"):
        return f"{role}: {route} refused without the JSON error body"
    if outcome.response.json()["error"]["status"] != status:
        return f"{role}: {route} error body does not match its status"
    if outcome.changed:
        return f"{role}: {route} was refused ({status}) but the database changed"
    return None


@pytest.mark.parametrize("role", list(ROLES))
def test_writes_follow_the_permission_table(db, role):
    """Every write route, tried by one role; each try runs in a savepoint rolled back afterwards."""
    from django.db import transaction

    world = make_world(role)
    client = APIClient()
    client.force_login(world.actor)
    problems = []
    for route in sorted(CASES):
        try:
            with transaction.atomic():
                problems.append(_judge(role, route, CASES[route](world, client)))
                raise _Undo
        except _Undo:
            pass
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)
