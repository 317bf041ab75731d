"""Generated write tests for the admin: every add, change and delete page, inline, action and custom page, per role.

Like tests/rbac/test_writes.py for the API: a case makes one admin write as the actor of
:mod:`tests.rbac.writes` and says, from the permission table, whether it must be allowed; the
test checks the answer and the database (allowed: the change is there; refused: 403/404, or the
form shown again with an error, or the page's error message, and nothing changed, and the
actor's permissions are those from before). Form pages are posted the way a browser would: the
fields are read from the page an admin gets (inline management forms included), one is changed.

Every role also runs the cases as a holder of the global ``admin`` role, to whom the table allows
everything, so that each case shows it can succeed and a refusal is never a broken form.

An admin without a case fails :func:`test_every_admin_write_has_a_case`: each registered
PortalModelAdmin's add, change and delete page where an admin could write at all, each of its
actions (Django's "delete selected" included), inline rows that can be added, changed or deleted, and each
URL its ``get_urls()`` adds to Django's. Admins that never write (read-only ones) get generated
cases asserting that a POST to their add, change and delete pages is refused.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Model
from django.forms.models import model_to_dict
from django.test import Client, RequestFactory

from backups.models import BackupTarget, Restore, Snapshot
from clusters import config as cluster_config
from clusters import inventory, kube, schema
from clusters.models import Cluster, ClusterConfigVersion, Node, Project, Upgrade
from portal.admin_base import PortalModelAdmin
from portal.models import ApiToken, AuditEvent, Job, SSOProvider, SSOSettings
from rbac.models import (
    ClusterRoleBinding,
    GlobalRole,
    GlobalRoleBinding,
    Group,
    ProjectRoleBinding,
    RoleTemplate,
)
from tests.rbac.writes import (
    KINDS,
    World,
    deletion_queued,
    fleet_target,
    grants_snapshot,
    make_world,
    own_token,
    queued_job,
    table_perms,
)
from tests.tenancy import UNREACHABLE_S3, backup_target, finished_restore, is_admin_only, ready_snapshot

User = get_user_model()
NEW_PASSWORD = "N3w-passw0rd-for-test"


# --- posting forms the way a browser does -----------------------------------------------------------------

class _FormFields(HTMLParser):
    """What a browser submits from a page's POST forms (the header's logout form aside)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.data: dict[str, list[str]] = {}
        self._in_form = False
        self._select: tuple[str, bool, list] | None = None
        self._option: list | None = None
        self._textarea: str | None = None
        self._text: list[str] = []

    def _add(self, name: str | None, value: str) -> None:
        if name and "__prefix__" not in name:
            self.data.setdefault(name, []).append(value)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._in_form = (a.get("method") or "get").lower() == "post" and a.get("id") != "logout-form"
            return
        if not self._in_form or "disabled" in a:
            return
        if tag == "input":
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "button", "image", "reset", "file"):
                return
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self._add(a.get("name"), a.get("value") or "on")
                return
            self._add(a.get("name"), a.get("value") or "")
        elif tag == "select":
            self._select = (a.get("name"), "multiple" in a, [])
        elif tag == "option" and self._select is not None:
            self._option = [a.get("value"), "selected" in a, ""]
            self._select[2].append(self._option)
        elif tag == "textarea":
            self._textarea, self._text = a.get("name"), []

    def handle_data(self, data):
        if self._textarea is not None:
            self._text.append(data)
        elif self._option is not None:
            self._option[2] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False
        elif tag == "option":
            self._option = None
        elif tag == "select" and self._select is not None:
            name, multiple, options = self._select
            values = [v if v is not None else text.strip() for v, selected, text in options]
            chosen = [v for v, (_v, selected, _t) in zip(values, options, strict=True) if selected]
            if not chosen and not multiple and values:
                chosen = values[:1]
            for value in chosen:
                self._add(name, value)
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            text = "".join(self._text)
            self._add(self._textarea, text[1:] if text.startswith("\n") else text)  # HTML drops the first newline
            self._textarea = None


def form_fields(html: str) -> dict[str, list[str]]:
    parser = _FormFields()
    parser.feed(html)
    return parser.data


def _path(model: type[Model]) -> str:
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/"


def label(model: type[Model]) -> str:
    return f"{model._meta.app_label}.{model._meta.model_name}"


def add_url(model: type[Model]) -> str:
    return f"{_path(model)}add/"


def change_url(obj: Model) -> str:
    return f"{_path(type(obj))}{obj.pk}/change/"


def delete_url(obj: Model) -> str:
    return f"{_path(type(obj))}{obj.pk}/delete/"


@dataclass
class Browsers:
    """One case's view of the world: the actor's browser, and an admin's to read the forms from."""

    w: World
    actor: Client
    root: Client

    def form(self, url: str, changes: dict[str, Any] | None = None) -> dict[str, list[str]]:
        """The fields of the form at ``url`` as the admin gets it, with ``changes`` (None: leave the field out)."""
        page = self.root.get(url)
        assert page.status_code == 200, f"the admin cannot open {url}: {page.status_code}"
        data = form_fields(page.content.decode())
        for name, value in (changes or {}).items():
            if value is None:
                data.pop(name, None)
            else:
                data[name] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        return data

    def post(self, url: str, data: dict | None = None):
        self.actor.cookies.pop("messages", None)  # what the answer says, not what earlier ones left unread
        return self.actor.post(url, data or {})

    def action(self, model: type[Model], name: str, objs: list[Model], **extra):
        data = {"action": name, "_selected_action": [str(o.pk) for o in objs], "index": "0", **extra}
        return self.post(_path(model), data)


# --- cases --------------------------------------------------------------------------------------------------

FORM = (200,)  # a form page refuses by showing itself again with the error (a choice it does not offer, say)
ACTION = (200, 302, 403, 404)  # an action on what the user may not touch does nothing; the database decides


@dataclass
class Outcome:
    expected: bool  # what the permission table says
    response: Any
    changed: bool | None  # what the database shows (None: not observable, the answer decides)
    allowed_status: tuple[int, ...] = (302,)
    refused_status: tuple[int, ...] = (403, 404)
    shown_refusal: tuple[int, ...] = ()  # answers that refuse when the page or a message says why


CASES: dict[str, Callable[[Browsers], Outcome]] = {}


def case(*keys: str):
    """Keys: ``<app>.<model>:<add|change|delete|action:NAME|url:NAME|inline:PREFIX:add|...>[@variant]``."""

    def wrap(fn):
        for key in keys:
            assert key not in CASES, key
            CASES[key] = fn
        return fn

    return wrap


def exists(model: type[Model], **lookup) -> bool:
    return model._default_manager.filter(**lookup).exists()


def row(obj: Model) -> dict:
    fresh = type(obj)._default_manager.filter(pk=obj.pk).first()
    return model_to_dict(fresh) if fresh is not None else {}


# Objects of every admin's model, for its delete page, its "delete selected" action and the refusals of
# read-only admins; with the table's answer to deleting them.
SAMPLES: dict[type[Model], Callable[[World], Model]] = {}
MAY_DELETE: dict[type[Model], Callable[[World], bool]] = {}


def sample(model: type[Model], make: Callable[[World], Model], may_delete: Callable[[World], bool] | None = None):
    SAMPLES[model] = make
    if may_delete is not None:
        MAY_DELETE[model] = may_delete


def _paused_upgrade(w: World) -> Upgrade:
    return Upgrade.objects.create(cluster=w.a.cluster, from_version="v1.15.11", to_version="v1.16.8",
                                  state=Upgrade.State.PAUSED, reason="test", job=queued_job(w, status="paused"))


def _may_manage_member(w: World, perm: str) -> bool:
    """``perm`` on tenant A's member, who holds the default role and project-member on A1: held, and all theirs too."""
    return (w.may(perm) and w.may_grant(table_perms("user"))
            and w.may_grant(table_perms("project-member"), w.a.cluster, w.a.project))


def _cluster_with_node(w: World) -> Cluster:
    """Cluster A as imported clusters are: with a node (records only the system writes go with their cluster)."""
    Node.objects.get_or_create(cluster=w.a.cluster, name="wa-node-0", defaults={"roles": ["worker"], "ready": True})
    return w.a.cluster


sample(Cluster, _cluster_with_node, lambda w: w.may("cluster.delete", w.a.cluster))
sample(Project, lambda w: w.a.project, lambda w: w.may("project.delete", w.a.cluster, w.a.project))
sample(Node, lambda w: Node.objects.create(cluster=w.a.cluster, name="wa-node-1", roles=["worker"], ready=True))
sample(Upgrade, _paused_upgrade)
sample(AuditEvent, lambda w: AuditEvent.objects.create(action="update", cluster=w.a.cluster, user=w.actor,
                                                         object_repr=w.a.cluster.name))
sample(Job, queued_job, lambda w: w.may("job.delete", w.a.cluster))
sample(ApiToken, own_token, lambda w: w.may("apitoken.delete"))
sample(User, lambda w: w.a.member, lambda w: _may_manage_member(w, "user.delete"))
sample(Group, lambda w: Group.objects.create(name="plain"), lambda w: w.may("group.delete"))
sample(GlobalRole, lambda w: w.custom_global, lambda w: w.may("globalrole.delete"))
sample(RoleTemplate, lambda w: w.custom_template, lambda w: w.may("roletemplate.delete"))
sample(GlobalRoleBinding, lambda w: GlobalRoleBinding.objects.create(role=w.custom_global, user=w.a.member),
       lambda w: w.may("globalrolebinding.delete"))
sample(ClusterRoleBinding,
       lambda w: ClusterRoleBinding.objects.create(cluster=w.a.cluster, role=w.custom_template, user=w.a.member),
       lambda w: w.may("clusterrolebinding.delete", w.a.cluster))
sample(ProjectRoleBinding,
       lambda w: ProjectRoleBinding.objects.create(project=w.a.project, role=RoleTemplate.objects.get(name="read-only"),
                                                   user=w.a.owner),
       lambda w: w.may("projectrolebinding.delete", w.a.cluster, w.a.project))
sample(SSOProvider, lambda w: SSOProvider.objects.create(name="University", slug="uni"),
       lambda w: w.may("ssoprovider.delete"))
sample(SSOSettings, lambda w: SSOSettings.load())
sample(BackupTarget, lambda w: backup_target(w.a), lambda w: w.may("backuptarget.delete", w.a.cluster))
sample(Snapshot, lambda w: ready_snapshot(w.a))  # read-only admin: deleting is the delete_everywhere action
sample(Restore, lambda w: finished_restore(w.a))


def _delete_cases(model: type[Model]) -> None:
    make, may = SAMPLES[model], MAY_DELETE[model]

    @case(f"{label(model)}:delete")
    def delete_page(b: Browsers) -> Outcome:
        obj = make(b.w)
        r = b.post(delete_url(obj), {"post": "yes"})
        return Outcome(may(b.w), r, not exists(model, pk=obj.pk))

    @case(f"{label(model)}:action:delete_selected")
    def delete_selected(b: Browsers) -> Outcome:
        obj = make(b.w)
        r = b.action(model, "delete_selected", [obj], post="yes")
        return Outcome(may(b.w), r, not exists(model, pk=obj.pk), refused_status=ACTION)


# CIS scans and notifiers (issue 11).
def _scan_profile(w: World):
    from scans.models import ScanProfile

    return ScanProfile.objects.get_or_create(name="mine", benchmark="rke-cis-1.4",
                                             defaults={"skips": {"1.1.11": "local images"}})[0]


def _scan_schedule(w: World):
    from scans.models import ScanProfile, ScanSchedule

    return ScanSchedule.objects.create(cluster=w.a.cluster, profile=ScanProfile.objects.get(name="rke-cis-1.4-hardened"))


def _scan(w: World):
    from scans.models import Scan

    return Scan.objects.create(cluster=w.a.cluster, profile_name="rke-cis-1.4-hardened", benchmark="rke-cis-1.4",
                               state="passed")


def _notifier(w: World, name: str = "ops-slack"):
    from notifiers.models import Notifier

    return Notifier.objects.get_or_create(name=name, defaults={"kind": "slack",
                                                               "slack_webhook_url": "http://127.0.0.1:9/hook"})[0]


def _register_scan_samples() -> None:
    from notifiers.models import Notifier
    from scans.models import Scan, ScanProfile, ScanSchedule

    sample(ScanProfile, _scan_profile, lambda w: w.may("scanprofile.delete"))
    sample(ScanSchedule, _scan_schedule, lambda w: w.may("scan.delete", w.a.cluster))
    sample(Scan, _scan, lambda w: w.may("scan.delete", w.a.cluster))
    sample(Notifier, _notifier, lambda w: w.may("notifier.delete"))


_register_scan_samples()


for _model in MAY_DELETE:
    _delete_cases(_model)


# --- clusters ------------------------------------------------------------------------------------------------

def _fake_look(kubeconfig: str, *, allow_insecure: bool = False) -> kube.ClusterView:
    """The import's look at the cluster, without a cluster: what it answers does not matter to permissions."""
    return kube.ClusterView(git_version="v1.18.6", kind="imported", server="https://127.0.0.1:6443", nodes=[])


@case("clusters.cluster:add")
def cluster_add(b: Browsers) -> Outcome:
    data = b.form(add_url(Cluster), {"name": "new-one", "description": "imported in a test",
                                     "kubeconfig": "apiVersion: v1\nkind: Config\n"})
    r = b.post(add_url(Cluster), data)
    return Outcome(b.w.may("cluster.add"), r, exists(Cluster, name="new-one"))


@case("clusters.cluster:change")
def cluster_change(b: Browsers) -> Outcome:
    cluster = b.w.a.cluster
    r = b.post(change_url(cluster), b.form(change_url(cluster), {"description": "changed"}))
    changed = Cluster.objects.get(pk=cluster.pk).description == "changed"
    return Outcome(b.w.may("cluster.change", cluster), r, changed)


def _inline(b: Browsers, cluster: Cluster) -> dict[str, list[str]]:
    data = b.form(change_url(cluster))
    assert "projects-TOTAL_FORMS" in data, "the cluster page has no project rows"
    return data


@case("clusters.cluster:inline:projects:add")
def cluster_inline_project_add(b: Browsers) -> Outcome:
    cluster = b.w.a.cluster
    data = _inline(b, cluster)
    n = int(data["projects-TOTAL_FORMS"][0])
    data.update({"projects-TOTAL_FORMS": [str(n + 1)], f"projects-{n}-name": ["inline-new"],
                 f"projects-{n}-description": [""], f"projects-{n}-namespaces": ["[]"],
                 f"projects-{n}-cluster": [str(cluster.pk)]})
    r = b.post(change_url(cluster), data)
    expected = b.w.may("cluster.change", cluster) and b.w.may("project.add", cluster)
    return Outcome(expected, r, exists(Project, name="inline-new"), shown_refusal=FORM)


def _row_of(data: dict[str, list[str]], project: Project) -> str:
    rows = [k[: -len("-id")] for k, v in data.items() if k.startswith("projects-") and k.endswith("-id")
            and v == [str(project.pk)]]
    assert rows, f"project {project} is not a row of its cluster's page"
    return rows[0]


@case("clusters.cluster:inline:projects:change")
def cluster_inline_project_change(b: Browsers) -> Outcome:
    cluster, project = b.w.a.cluster, b.w.a.project
    data = _inline(b, cluster)
    data[f"{_row_of(data, project)}-description"] = ["changed inline"]
    r = b.post(change_url(cluster), data)
    expected = b.w.may("cluster.change", cluster) and b.w.may("project.change", cluster, project)
    changed = Project.objects.get(pk=project.pk).description == "changed inline"
    return Outcome(expected, r, changed, shown_refusal=FORM)


@case("clusters.cluster:inline:projects:delete")
def cluster_inline_project_delete(b: Browsers) -> Outcome:
    cluster, project = b.w.a.cluster, b.w.a.project
    data = _inline(b, cluster)
    data[f"{_row_of(data, project)}-DELETE"] = ["on"]
    r = b.post(change_url(cluster), data)
    expected = b.w.may("cluster.change", cluster) and b.w.may("project.delete", cluster, project)
    return Outcome(expected, r, not exists(Project, pk=project.pk), shown_refusal=FORM)


def _config_yaml(w: World, version: str) -> str:
    """The config in force with another version, or (same version) drain turned on."""
    doc = dict(cluster_config.current_document(w.a.cluster))
    doc["kubernetes_version"] = version
    doc["upgrade_strategy"] = {**doc.get("upgrade_strategy", {}), "drain": True}
    return schema.to_yaml(doc)


@case("clusters.cluster:url:clusters_cluster_config")
def cluster_config_same(b: Browsers) -> Outcome:
    cluster = b.w.a.cluster
    before = ClusterConfigVersion.objects.filter(cluster=cluster).count()
    url = f"{_path(Cluster)}{cluster.pk}/config/"
    data = b.form(url, {"yaml": _config_yaml(b.w, "v1.15.11"), "comment": "more pods"})
    r = b.post(url, data)
    changed = ClusterConfigVersion.objects.filter(cluster=cluster).count() != before
    return Outcome(b.w.may("cluster.change", cluster), r, changed, shown_refusal=FORM)


@case("clusters.cluster:url:clusters_cluster_config@upgrade")
def cluster_config_upgrade(b: Browsers) -> Outcome:
    """A config with a new Kubernetes version starts an upgrade: it needs ``cluster.upgrade`` as well."""
    cluster = b.w.a.cluster
    before = ClusterConfigVersion.objects.filter(cluster=cluster).count()
    url = f"{_path(Cluster)}{cluster.pk}/config/"
    r = b.post(url, b.form(url, {"yaml": _config_yaml(b.w, "v1.16.8"), "comment": "upgrade"}))
    changed = (ClusterConfigVersion.objects.filter(cluster=cluster).count() != before
               or exists(Upgrade, cluster=cluster))
    if changed:
        assert exists(Upgrade, cluster=cluster, to_version="v1.16.8")
    expected = b.w.may("cluster.change", cluster) and b.w.may("cluster.upgrade", cluster)
    return Outcome(expected, r, changed, shown_refusal=FORM)


@case("clusters.cluster:url:clusters_cluster_sync")
def cluster_sync(b: Browsers) -> Outcome:
    cluster = b.w.a.cluster
    r = b.post(f"{_path(Cluster)}{cluster.pk}/sync/")
    changed = exists(Job, kind="clusters.sync", cluster=cluster)
    return Outcome(b.w.may("cluster.sync", cluster), r, changed, shown_refusal=(302,))


@case("clusters.cluster:action:sync_selected")
def cluster_sync_selected(b: Browsers) -> Outcome:
    cluster = b.w.a.cluster
    r = b.action(Cluster, "sync_selected", [cluster])
    changed = exists(Job, kind="clusters.sync", cluster=cluster)
    return Outcome(b.w.may("cluster.sync", cluster), r, changed, refused_status=ACTION)


# --- projects ------------------------------------------------------------------------------------------------

def _project_add(b: Browsers, cluster: Cluster, name: str) -> Outcome:
    data = b.form(add_url(Project), {"cluster": cluster.pk, "name": name, "description": "", "namespaces": "[]"})
    r = b.post(add_url(Project), data)
    expected = b.w.may("project.add", cluster) and b.w.sees_cluster(cluster)
    return Outcome(expected, r, exists(Project, name=name), shown_refusal=FORM)


@case("clusters.project:add")
def project_add(b: Browsers) -> Outcome:
    return _project_add(b, b.w.a.cluster, "new-project")


@case("clusters.project:add@other-tenant")
def project_add_elsewhere(b: Browsers) -> Outcome:
    return _project_add(b, b.w.b.cluster, "planted")


@case("clusters.project:change")
def project_change(b: Browsers) -> Outcome:
    w, project = b.w, b.w.a.project
    r = b.post(change_url(project), b.form(change_url(project), {"description": "changed"}))
    changed = Project.objects.get(pk=project.pk).description == "changed"
    return Outcome(w.may("project.change", w.a.cluster, project), r, changed, shown_refusal=FORM)


@case("clusters.project:change@move")
def project_move(b: Browsers) -> Outcome:
    """Moving A1 to tenant B's cluster: a project stays in its cluster (as in the API), whatever one holds.

    The page shows the cluster read-only: a posted one is ignored and the rest saved (302), or refused."""
    w, project = b.w, b.w.a.project
    data = {**b.form(change_url(project)), "cluster": [str(w.b.cluster.pk)]}
    r = b.post(change_url(project), data)
    moved = Project.objects.get(pk=project.pk).cluster_id == w.b.cluster.pk
    return Outcome(False, r, moved, refused_status=(302, 403, 404), shown_refusal=FORM)


# --- jobs and upgrades ---------------------------------------------------------------------------------------

def _cancelled(job: Job) -> bool:
    job.refresh_from_db()
    return job.cancel_requested or job.status == Job.Status.CANCELLED


@case("portal.job:url:portal_job_cancel")
def job_cancel(b: Browsers) -> Outcome:
    job = queued_job(b.w)
    r = b.post(f"{_path(Job)}{job.pk}/cancel/")
    return Outcome(b.w.may("job.cancel", b.w.a.cluster), r, _cancelled(job), shown_refusal=(302,))


@case("portal.job:url:portal_job_resume")
def job_resume(b: Browsers) -> Outcome:
    job = queued_job(b.w, status="paused")
    r = b.post(f"{_path(Job)}{job.pk}/resume/")
    changed = Job.objects.get(pk=job.pk).status != Job.Status.PAUSED
    return Outcome(b.w.may("job.resume", b.w.a.cluster), r, changed, shown_refusal=(302,))


@case("portal.job:action:cancel_selected")
def job_cancel_selected(b: Browsers) -> Outcome:
    job = queued_job(b.w)
    r = b.action(Job, "cancel_selected", [job])
    return Outcome(b.w.may("job.cancel", b.w.a.cluster), r, _cancelled(job), refused_status=ACTION)


@case("clusters.upgrade:url:clusters_upgrade_resume")
def upgrade_resume(b: Browsers) -> Outcome:
    upgrade = _paused_upgrade(b.w)
    r = b.post(f"{_path(Upgrade)}{upgrade.pk}/resume/")
    changed = Upgrade.objects.get(pk=upgrade.pk).state != Upgrade.State.PAUSED
    return Outcome(b.w.may("cluster.upgrade", b.w.a.cluster), r, changed, shown_refusal=(302,))


@case("clusters.upgrade:url:clusters_upgrade_cancel")
def upgrade_cancel(b: Browsers) -> Outcome:
    upgrade = _paused_upgrade(b.w)
    r = b.post(f"{_path(Upgrade)}{upgrade.pk}/cancel/")
    changed = Upgrade.objects.get(pk=upgrade.pk).state != Upgrade.State.PAUSED
    return Outcome(b.w.may("cluster.upgrade", b.w.a.cluster), r, changed, shown_refusal=(302,))


# --- API tokens ----------------------------------------------------------------------------------------------

def _token_add(b: Browsers, owner) -> Outcome:
    data = b.form(add_url(ApiToken), {"user": owner.pk, "description": "made-in-admin"})
    r = b.post(add_url(ApiToken), data)
    expected = b.w.may("apitoken.add") and (owner.pk == b.w.actor.pk or b.w.may("*"))
    return Outcome(expected, r, exists(ApiToken, user=owner, description="made-in-admin"), shown_refusal=FORM)


@case("portal.apitoken:add")
def token_add(b: Browsers) -> Outcome:
    return _token_add(b, b.w.actor)


@case("portal.apitoken:add@for-root")
def token_add_for_root(b: Browsers) -> Outcome:
    """Tokens are personal: one minted for the superuser is the superuser's power."""
    return _token_add(b, b.w.root)


@case("portal.apitoken:change")
def token_change(b: Browsers) -> Outcome:
    """A token's fields are read-only once minted: saving the page is allowed to its owner and changes nothing."""
    token = own_token(b.w)
    before = row(token)
    r = b.post(change_url(token), {**b.form(change_url(token)), "description": "changed"})
    assert row(token) == before, "a token's fields are read-only"
    return Outcome(b.w.may("apitoken.change"), r, None)


@case("portal.apitoken:delete@other-user")
def token_delete_other(b: Browsers) -> Outcome:
    token = ApiToken.issue(b.w.a.owner, description="theirs")[0]
    r = b.post(delete_url(token), {"post": "yes"})
    return Outcome(b.w.may("*"), r, not exists(ApiToken, pk=token.pk))


# --- users ---------------------------------------------------------------------------------------------------

@case("auth.user:add")
def user_add(b: Browsers) -> Outcome:
    data = b.form(add_url(User), {"username": "newbie", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    r = b.post(add_url(User), data)
    return Outcome(b.w.may("user.add"), r, exists(User, username="newbie"))


@case("auth.user:change")
def user_change(b: Browsers) -> Outcome:
    member = b.w.a.member
    r = b.post(change_url(member), b.form(change_url(member), {"first_name": "Renamed"}))
    changed = User.objects.get(pk=member.pk).first_name == "Renamed"
    return Outcome(_may_manage_member(b.w, "user.change"), r, changed)


@case("auth.user:change@superuser")
def user_make_superuser(b: Browsers) -> Outcome:
    """The actor ticks "superuser" on their own account."""
    actor = b.w.actor
    r = b.post(change_url(actor), b.form(change_url(actor), {"is_superuser": "on"}))
    changed = User.objects.get(pk=actor.pk).is_superuser
    return Outcome(b.w.may("*"), r, changed, shown_refusal=FORM)


def _password(b: Browsers, target) -> Outcome:
    url = f"{_path(User)}{target.pk}/password/"
    stored = User.objects.get(pk=target.pk).password
    r = b.post(url, b.form(url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}))
    changed = User.objects.get(pk=target.pk).password != stored
    return Outcome(b.w.may("*") or (b.w.may("user.change") and target.pk == b.w.actor.pk), r, changed,
                   shown_refusal=FORM)


@case("auth.user:url:auth_user_password_change")
def user_password_root(b: Browsers) -> Outcome:
    """Setting the superuser's password is taking the superuser's account."""
    return _password(b, b.w.root)


@case("auth.user:url:auth_user_password_change@own")
def user_password_own(b: Browsers) -> Outcome:
    """The admin's password page is a change of the user; the table gives no one ``user.change`` on themselves."""
    return _password(b, b.w.actor)


# --- groups and roles ----------------------------------------------------------------------------------------

@case("rbac.group:add")
def group_add(b: Browsers) -> Outcome:
    r = b.post(add_url(Group), b.form(add_url(Group), {"name": "newcomers"}))
    return Outcome(b.w.may("group.add"), r, exists(Group, name="newcomers"), shown_refusal=FORM)


@case("rbac.group:change")
def group_change(b: Browsers) -> Outcome:
    group = Group.objects.create(name="plain")
    r = b.post(change_url(group), b.form(change_url(group), {"description": "changed"}))
    return Outcome(b.w.may("group.change"), r, Group.objects.get(pk=group.pk).description == "changed",
                   shown_refusal=FORM)


@case("rbac.group:change@join-admins")
def group_join_admins(b: Browsers) -> Outcome:
    """The actor adds themselves to the group bound to the admin role."""
    w, group = b.w, b.w.admin_group
    data = b.form(change_url(group))
    data["members"] = [*data.get("members", []), str(w.actor.pk)]
    r = b.post(change_url(group), data)
    joined = group.members.filter(pk=w.actor.pk).exists()
    return Outcome(w.may("group.change") and w.may_grant(["*"]), r, joined, shown_refusal=FORM)


def _role_cases(model: type[Model], resource: str, custom_attr: str, extra: dict) -> None:
    @case(f"{label(model)}:add")
    def add(b: Browsers) -> Outcome:
        data = b.form(add_url(model), {"name": "made", "permissions": '["cluster.view"]', **extra})
        r = b.post(add_url(model), data)
        expected = b.w.may(f"{resource}.add") and b.w.may_grant(["cluster.view"])
        return Outcome(expected, r, exists(model, name="made"), shown_refusal=FORM)

    @case(f"{label(model)}:change")
    def change(b: Browsers) -> Outcome:
        role = getattr(b.w, custom_attr)
        r = b.post(change_url(role), b.form(change_url(role), {"description": "changed"}))
        expected = b.w.may(f"{resource}.change") and b.w.may_grant(role.permissions)
        return Outcome(expected, r, model.objects.get(pk=role.pk).description == "changed", shown_refusal=FORM)

    @case(f"{label(model)}:change@escalate")
    def escalate(b: Browsers) -> Outcome:
        """A role one may change is widened to everything: ``*`` is only the admins' to give."""
        role = getattr(b.w, custom_attr)
        r = b.post(change_url(role), b.form(change_url(role), {"permissions": '["*"]'}))
        expected = b.w.may(f"{resource}.change") and b.w.may_grant(["*"])
        return Outcome(expected, r, model.objects.get(pk=role.pk).permissions == ["*"], shown_refusal=FORM)


_role_cases(GlobalRole, "globalrole", "custom_global", {})
_role_cases(RoleTemplate, "roletemplate", "custom_template", {"context": "cluster"})


# --- bindings ------------------------------------------------------------------------------------------------

@case("rbac.globalrolebinding:add")
def grb_add(b: Browsers) -> Outcome:
    w, subject = b.w, b.w.a.member
    data = b.form(add_url(GlobalRoleBinding), {"role": w.custom_global.pk, "user": subject.pk, "group": ""})
    r = b.post(add_url(GlobalRoleBinding), data)
    expected = w.may("globalrolebinding.add") and w.may("user.view") and w.may_grant(w.custom_global.permissions)
    return Outcome(expected, r, exists(GlobalRoleBinding, role=w.custom_global, user=subject), shown_refusal=FORM)


@case("rbac.globalrolebinding:add@admin-to-self")
def grb_add_admin_to_self(b: Browsers) -> Outcome:
    w = b.w
    role = GlobalRole.objects.get(name="admin")
    data = b.form(add_url(GlobalRoleBinding), {"role": role.pk, "user": w.actor.pk, "group": ""})
    r = b.post(add_url(GlobalRoleBinding), data)
    expected = w.may("globalrolebinding.add") and w.may_grant(role.permissions)
    return Outcome(expected, r, exists(GlobalRoleBinding, role=role, user=w.actor), shown_refusal=FORM)


@case("rbac.globalrolebinding:change")
def grb_change(b: Browsers) -> Outcome:
    w = b.w
    binding = GlobalRoleBinding.objects.create(role=w.custom_global, user=w.a.member)
    other = GlobalRole.objects.create(name="viewer-2", permissions=["node.view"])
    r = b.post(change_url(binding), b.form(change_url(binding), {"role": other.pk}))
    expected = w.may("globalrolebinding.change") and w.may_grant(other.permissions)
    return Outcome(expected, r, GlobalRoleBinding.objects.get(pk=binding.pk).role_id == other.pk,
                   shown_refusal=FORM)


@case("rbac.clusterrolebinding:add")
def crb_add(b: Browsers) -> Outcome:
    w, subject = b.w, b.w.a.member
    role = RoleTemplate.objects.get(name="cluster-member")
    data = b.form(add_url(ClusterRoleBinding),
                  {"cluster": w.a.cluster.pk, "role": role.pk, "user": subject.pk, "group": ""})
    r = b.post(add_url(ClusterRoleBinding), data)
    expected = (w.may("clusterrolebinding.add", w.a.cluster) and w.may("user.view") and w.sees_cluster(w.a.cluster)
                and w.may_grant(role.permissions, w.a.cluster))
    changed = exists(ClusterRoleBinding, cluster=w.a.cluster, role=role, user=subject)
    return Outcome(expected, r, changed, shown_refusal=FORM)


@case("rbac.clusterrolebinding:add@other-tenant")
def crb_add_elsewhere(b: Browsers) -> Outcome:
    """The actor makes themselves owner of tenant B's cluster."""
    w = b.w
    role = RoleTemplate.objects.get(name="cluster-owner")
    data = b.form(add_url(ClusterRoleBinding),
                  {"cluster": w.b.cluster.pk, "role": role.pk, "user": w.actor.pk, "group": ""})
    r = b.post(add_url(ClusterRoleBinding), data)
    expected = (w.may("clusterrolebinding.add", w.b.cluster) and w.sees_cluster(w.b.cluster)
                and w.may_grant(role.permissions, w.b.cluster))
    changed = exists(ClusterRoleBinding, cluster=w.b.cluster, user=w.actor)
    return Outcome(expected, r, changed, shown_refusal=FORM)


@case("rbac.clusterrolebinding:change")
def crb_change(b: Browsers) -> Outcome:
    w = b.w
    binding = ClusterRoleBinding.objects.create(cluster=w.a.cluster, role=w.custom_template, user=w.a.member)
    role = RoleTemplate.objects.get(name="cluster-member")
    r = b.post(change_url(binding), b.form(change_url(binding), {"role": role.pk}))
    expected = w.may("clusterrolebinding.change", w.a.cluster) and w.may_grant(role.permissions, w.a.cluster)
    return Outcome(expected, r, ClusterRoleBinding.objects.get(pk=binding.pk).role_id == role.pk,
                   shown_refusal=FORM)


@case("rbac.clusterrolebinding:change@move")
def crb_move(b: Browsers) -> Outcome:
    """A binding of cluster A is moved to tenant B's cluster: the change must be allowed at both ends."""
    w = b.w
    binding = ClusterRoleBinding.objects.create(cluster=w.a.cluster, role=w.custom_template, user=w.a.member)
    r = b.post(change_url(binding), b.form(change_url(binding), {"cluster": w.b.cluster.pk}))
    moved = ClusterRoleBinding.objects.get(pk=binding.pk).cluster_id == w.b.cluster.pk
    expected = (w.may("clusterrolebinding.change", w.a.cluster) and w.may("clusterrolebinding.change", w.b.cluster)
                and w.sees_cluster(w.b.cluster) and w.may_grant(w.custom_template.permissions, w.b.cluster))
    return Outcome(expected, r, moved, shown_refusal=FORM)


@case("rbac.projectrolebinding:add")
def prb_add(b: Browsers) -> Outcome:
    w, subject = b.w, b.w.a.owner
    role = RoleTemplate.objects.get(name="read-only")
    data = b.form(add_url(ProjectRoleBinding),
                  {"project": w.a.project.pk, "role": role.pk, "user": subject.pk, "group": ""})
    r = b.post(add_url(ProjectRoleBinding), data)
    expected = (w.may("projectrolebinding.add", w.a.cluster, w.a.project) and w.may("user.view")
                and w.may_grant(role.permissions, w.a.cluster, w.a.project))
    changed = exists(ProjectRoleBinding, project=w.a.project, role=role, user=subject)
    return Outcome(expected, r, changed, shown_refusal=FORM)


@case("rbac.projectrolebinding:add@owner-to-self")
def prb_add_owner_to_self(b: Browsers) -> Outcome:
    """The actor makes themselves owner of project A1: only those who hold all of project-owner there may."""
    w = b.w
    role = RoleTemplate.objects.get(name="project-owner")
    data = b.form(add_url(ProjectRoleBinding),
                  {"project": w.a.project.pk, "role": role.pk, "user": w.actor.pk, "group": ""})
    r = b.post(add_url(ProjectRoleBinding), data)
    expected = (w.may("projectrolebinding.add", w.a.cluster, w.a.project)
                and w.may_grant(role.permissions, w.a.cluster, w.a.project))
    changed = exists(ProjectRoleBinding, project=w.a.project, role=role, user=w.actor)
    return Outcome(expected, r, changed, shown_refusal=FORM)


@case("rbac.projectrolebinding:change")
def prb_change(b: Browsers) -> Outcome:
    w = b.w
    binding = ProjectRoleBinding.objects.create(project=w.a.project, role=RoleTemplate.objects.get(name="read-only"),
                                                user=w.a.owner)
    role = RoleTemplate.objects.get(name="project-member")
    r = b.post(change_url(binding), b.form(change_url(binding), {"role": role.pk}))
    expected = (w.may("projectrolebinding.change", w.a.cluster, w.a.project)
                and w.may_grant(role.permissions, w.a.cluster, w.a.project))
    return Outcome(expected, r, ProjectRoleBinding.objects.get(pk=binding.pk).role_id == role.pk,
                   shown_refusal=FORM)


@case("rbac.projectrolebinding:change@move")
def prb_move(b: Browsers) -> Outcome:
    """A binding of project A1 is moved to tenant B's project."""
    w = b.w
    role = RoleTemplate.objects.get(name="read-only")
    binding = ProjectRoleBinding.objects.create(project=w.a.project, role=role, user=w.a.member)
    r = b.post(change_url(binding), b.form(change_url(binding), {"project": w.b.project.pk}))
    moved = ProjectRoleBinding.objects.get(pk=binding.pk).project_id == w.b.project.pk
    expected = (w.may("projectrolebinding.change", w.a.cluster, w.a.project)
                and w.may("projectrolebinding.change", w.b.cluster, w.b.project)
                and w.may("project.view", w.b.cluster, w.b.project)
                and w.may_grant(role.permissions, w.b.cluster, w.b.project))
    return Outcome(expected, r, moved, shown_refusal=FORM)


# --- SSO -----------------------------------------------------------------------------------------------------

def _provider() -> SSOProvider:
    return SSOProvider.objects.create(name="University", slug="uni")


@case("portal.ssoprovider:add")
def sso_add(b: Browsers) -> Outcome:
    r = b.post(add_url(SSOProvider), b.form(add_url(SSOProvider), {"name": "Planted", "slug": "planted",
                                                                 "sp_entity_id": "https://corral.test/sp"}))
    return Outcome(b.w.may("ssoprovider.add"), r, exists(SSOProvider, slug="planted"), shown_refusal=FORM)


@case("portal.ssoprovider:change")
def sso_change(b: Browsers) -> Outcome:
    provider = _provider()
    r = b.post(change_url(provider), b.form(change_url(provider), {"name": "Changed"}))
    return Outcome(b.w.may("ssoprovider.change"), r, SSOProvider.objects.get(pk=provider.pk).name == "Changed",
                   shown_refusal=FORM)


def _key_changed(provider: SSOProvider) -> bool:
    return SSOProvider.objects.get(pk=provider.pk).sp_private_key != provider.sp_private_key


@case("portal.ssoprovider:url:portal_ssoprovider_generate_key")
def sso_generate_key(b: Browsers) -> Outcome:
    provider = _provider()
    r = b.post(f"{_path(SSOProvider)}{provider.pk}/generate-key/")
    return Outcome(b.w.may("ssoprovider.change"), r, _key_changed(provider), shown_refusal=(302,))


@case("portal.ssoprovider:action:generate_sp_key")
def sso_generate_key_action(b: Browsers) -> Outcome:
    provider = _provider()
    r = b.action(SSOProvider, "generate_sp_key", [provider])
    return Outcome(b.w.may("ssoprovider.change"), r, _key_changed(provider), refused_status=ACTION)


def _refreshed(response) -> bool:
    """The provider has no metadata URL: a refresh that ran says so (it cannot fetch anything)."""
    return any("no metadata URL" in str(m) for m in _messages(response))


@case("portal.ssoprovider:url:portal_ssoprovider_refresh")
def sso_refresh(b: Browsers) -> Outcome:
    provider = _provider()
    r = b.post(f"{_path(SSOProvider)}{provider.pk}/refresh/")
    return Outcome(b.w.may("ssoprovider.change"), r, _refreshed(r), shown_refusal=(302,))


@case("portal.ssoprovider:action:refresh_metadata")
def sso_refresh_action(b: Browsers) -> Outcome:
    provider = _provider()
    r = b.action(SSOProvider, "refresh_metadata", [provider])
    return Outcome(b.w.may("ssoprovider.change"), r, _refreshed(r), refused_status=ACTION)


def _tested(response) -> bool:
    return any("Test of University" in str(m) for m in _messages(response))


@case("portal.ssoprovider:url:portal_ssoprovider_test")
def sso_test(b: Browsers) -> Outcome:
    """Trying a configuration writes nothing, but is reserved to those who may see the provider."""
    provider = _provider()
    r = b.post(f"{_path(SSOProvider)}{provider.pk}/test/")
    return Outcome(b.w.may("ssoprovider.view"), r, _tested(r))


@case("portal.ssoprovider:action:test_configuration")
def sso_test_action(b: Browsers) -> Outcome:
    provider = _provider()
    r = b.action(SSOProvider, "test_configuration", [provider])
    return Outcome(b.w.may("ssoprovider.view"), r, _tested(r), refused_status=ACTION)


@case("portal.ssosettings:change")
def sso_settings_change(b: Browsers) -> Outcome:
    settings = SSOSettings.load()
    before = settings.local_login_enabled
    data = b.form(change_url(settings), {"local_login_enabled": None if before else "on"})
    r = b.post(change_url(settings), data)
    changed = SSOSettings.objects.get(pk=settings.pk).local_login_enabled != before
    return Outcome(b.w.may("ssoprovider.change"), r, changed)


# --- CIS scans and notifiers ---------------------------------------------------------------------------------

@case("scans.scanprofile:add")
def scanprofile_add(b: Browsers) -> Outcome:
    from scans.models import ScanProfile

    data = b.form(add_url(ScanProfile), {"name": "made", "benchmark": "cis-1.8", "description": "",
                                         "skips": '{"1.2.16": "profiling is needed here"}'})
    r = b.post(add_url(ScanProfile), data)
    return Outcome(b.w.may("scanprofile.add"), r, exists(ScanProfile, name="made"), shown_refusal=FORM)


@case("scans.scanprofile:change")
def scanprofile_change(b: Browsers) -> Outcome:
    from scans.models import ScanProfile

    profile = _scan_profile(b.w)
    r = b.post(change_url(profile), b.form(change_url(profile), {"description": "changed"}))
    changed = ScanProfile.objects.get(pk=profile.pk).description == "changed"
    return Outcome(b.w.may("scanprofile.change"), r, changed, shown_refusal=FORM)


def _scan_page(b: Browsers, suffix: str) -> Outcome:
    from scans.models import Scan

    scan = _scan(b.w)
    r = b.actor.get(f"{_path(Scan)}{scan.pk}/{suffix}")
    return Outcome(b.w.may("scan.view", b.w.a.cluster), r, None, allowed_status=(200,), refused_status=(404,))


@case("scans.scan:url:scans_scan_report")
def scan_report(b: Browsers) -> Outcome:
    return _scan_page(b, "report/")


@case("scans.scan:url:scans_scan_download")
def scan_download(b: Browsers) -> Outcome:
    return _scan_page(b, "download/csv/")


@case("scans.scan:url:scans_scan_compare")
def scan_compare(b: Browsers) -> Outcome:
    """A comparison with a scan of another tenant's cluster is no comparison: back to the report, nothing shown."""
    from scans.models import Scan

    scan = _scan(b.w)
    theirs = Scan.objects.create(cluster=b.w.b.cluster, benchmark="cis-1.8", state="failed")
    newer = _scan(b.w)
    r = b.actor.get(f"{_path(Scan)}{newer.pk}/compare/?with={scan.pk}")
    assert b.actor.get(f"{_path(Scan)}{newer.pk}/compare/?with={theirs.pk}").status_code in (302, 404)
    return Outcome(b.w.may("scan.view", b.w.a.cluster), r, None, allowed_status=(200,), refused_status=(404,))


@case("scans.scan:url:scans_scan_run")
def scan_run(b: Browsers) -> Outcome:
    from scans.models import Scan

    url = f"{_path(Scan)}run/"
    r = b.post(url, b.form(url, {"cluster": b.w.a.cluster.pk, "profile": ""}))
    expected = b.w.sees_cluster(b.w.a.cluster) and b.w.may("scan.scan", b.w.a.cluster)
    return Outcome(expected, r, exists(Scan, cluster=b.w.a.cluster), shown_refusal=FORM)


@case("scans.scanschedule:add")
def schedule_add(b: Browsers) -> Outcome:
    from scans.models import ScanProfile, ScanSchedule

    profile = ScanProfile.objects.get(name="rke-cis-1.4-hardened")
    data = b.form(add_url(ScanSchedule), {"cluster": b.w.a.cluster.pk, "profile": profile.pk, "cron": "0 3 * * *",
                                          "keep_last": 3})
    r = b.post(add_url(ScanSchedule), data)
    expected = b.w.may("scan.add", b.w.a.cluster) and b.w.sees_cluster(b.w.a.cluster)
    return Outcome(expected, r, exists(ScanSchedule, cluster=b.w.a.cluster), shown_refusal=FORM)


@case("scans.scanschedule:change")
def schedule_change(b: Browsers) -> Outcome:
    from scans.models import ScanSchedule

    schedule = _scan_schedule(b.w)
    r = b.post(change_url(schedule), b.form(change_url(schedule), {"cron": "30 4 * * 1"}))
    changed = ScanSchedule.objects.get(pk=schedule.pk).cron == "30 4 * * 1"
    return Outcome(b.w.may("scan.change", b.w.a.cluster), r, changed, shown_refusal=FORM)


@case("scans.scanschedule:inline:alerts:add")
def schedule_alert_add(b: Browsers) -> Outcome:
    from scans.models import ScanAlert

    schedule, notifier = _scan_schedule(b.w), _notifier(b.w)
    data = b.form(change_url(schedule))
    n = int(data["alerts-TOTAL_FORMS"][0])
    data.update({"alerts-TOTAL_FORMS": [str(n + 1)], f"alerts-{n}-notifier": [str(notifier.pk)],
                 f"alerts-{n}-when": ["always"], f"alerts-{n}-schedule": [str(schedule.pk)]})
    r = b.post(change_url(schedule), data)
    expected = (b.w.may("scan.change", b.w.a.cluster) and b.w.may("scan.add", b.w.a.cluster)
                and b.w.may("notifier.view"))
    return Outcome(expected, r, exists(ScanAlert, schedule=schedule), shown_refusal=FORM)


def _alert_row(b: Browsers):
    from scans.models import ScanAlert

    schedule = _scan_schedule(b.w)
    alert = ScanAlert.objects.create(schedule=schedule, notifier=_notifier(b.w), when="failure")
    data = b.form(change_url(schedule))
    rows = [k[: -len("-id")] for k, v in data.items() if k.startswith("alerts-") and k.endswith("-id")
            and v == [str(alert.pk)]]
    assert rows, "the alert rule is not a row of its schedule's page"
    return schedule, alert, data, rows[0]


@case("scans.scanschedule:inline:alerts:change")
def schedule_alert_change(b: Browsers) -> Outcome:
    from scans.models import ScanAlert

    schedule, alert, data, row_prefix = _alert_row(b)
    data[f"{row_prefix}-when"] = ["always"]
    r = b.post(change_url(schedule), data)
    changed = ScanAlert.objects.get(pk=alert.pk).when == "always"
    # The row's notifier is a choice only those who may see notifiers are offered.
    expected = b.w.may("scan.change", b.w.a.cluster) and b.w.may("notifier.view")
    return Outcome(expected, r, changed, shown_refusal=FORM)


@case("scans.scanschedule:inline:alerts:delete")
def schedule_alert_delete(b: Browsers) -> Outcome:
    from scans.models import ScanAlert

    schedule, alert, data, row_prefix = _alert_row(b)
    data[f"{row_prefix}-DELETE"] = ["on"]
    r = b.post(change_url(schedule), data)
    expected = (b.w.may("scan.change", b.w.a.cluster) and b.w.may("scan.delete", b.w.a.cluster)
                and b.w.may("notifier.view"))
    return Outcome(expected, r, not exists(ScanAlert, pk=alert.pk), shown_refusal=FORM)


@case("notifiers.notifier:add")
def notifier_add(b: Browsers) -> Outcome:
    from notifiers.models import Notifier

    data = b.form(add_url(Notifier), {"name": "made", "kind": "slack", "slack_webhook_url": "https://hooks.example.test/x"})
    r = b.post(add_url(Notifier), data)
    return Outcome(b.w.may("notifier.add"), r, exists(Notifier, name="made"), shown_refusal=FORM)


@case("notifiers.notifier:change")
def notifier_change(b: Browsers) -> Outcome:
    from notifiers.models import Notifier

    notifier = _notifier(b.w)
    r = b.post(change_url(notifier), b.form(change_url(notifier), {"description": "changed"}))
    changed = Notifier.objects.get(pk=notifier.pk).description == "changed"
    assert Notifier.objects.get(pk=notifier.pk).slack_webhook_url == "http://127.0.0.1:9/hook", "the secret was kept"
    return Outcome(b.w.may("notifier.change"), r, changed, shown_refusal=FORM)


@case("notifiers.notifier:action:send_test_message")
def notifier_send_test(b: Browsers) -> Outcome:
    """Nothing listens at the URL: a test that ran leaves its error on the notifier."""
    from notifiers.models import Notifier

    notifier = _notifier(b.w)
    r = b.action(Notifier, "send_test_message", [notifier])
    return Outcome(b.w.may("notifier.change"), r, Notifier.objects.get(pk=notifier.pk).last_error != "",
                   refused_status=ACTION)


# --- backups -------------------------------------------------------------------------------------------------

def _target_form(b: Browsers, url: str, cluster: Cluster | None, name: str) -> dict[str, list[str]]:
    return b.form(url, {"name": name, "cluster": cluster.pk if cluster is not None else "",
                        "endpoint": UNREACHABLE_S3, "bucket": "new-bucket", "access_key": "AKIANEWACCESSKEY0001",
                        "secret_key": "new-secret-key-0123456789"})


@case("backups.backuptarget:add")
def target_add(b: Browsers) -> Outcome:
    w = b.w
    r = b.post(add_url(BackupTarget), _target_form(b, add_url(BackupTarget), w.a.cluster, "new-target"))
    expected = w.may("backuptarget.add", w.a.cluster) and w.sees_cluster(w.a.cluster)
    return Outcome(expected, r, exists(BackupTarget, name="new-target"), shown_refusal=FORM)


@case("backups.backuptarget:add@other-tenant")
def target_add_elsewhere(b: Browsers) -> Outcome:
    """A target for tenant B's cluster: its snapshots would go to a bucket the actor holds the keys of."""
    w = b.w
    r = b.post(add_url(BackupTarget), _target_form(b, add_url(BackupTarget), w.b.cluster, "planted"))
    expected = w.may("backuptarget.add", w.b.cluster) and w.sees_cluster(w.b.cluster)
    return Outcome(expected, r, exists(BackupTarget, name="planted"), shown_refusal=FORM)


@case("backups.backuptarget:add@fleet-wide")
def target_add_fleet(b: Browsers) -> Outcome:
    """No cluster: a fleet-wide target, global roles only."""
    r = b.post(add_url(BackupTarget), _target_form(b, add_url(BackupTarget), None, "fleet-new"))
    return Outcome(b.w.may("backuptarget.add"), r, exists(BackupTarget, name="fleet-new"), shown_refusal=FORM)


def _keys(target: BackupTarget) -> tuple[str, str]:
    fresh = BackupTarget.objects.get(pk=target.pk)
    return fresh.access_key, fresh.secret_key


@case("backups.backuptarget:change")
def target_change(b: Browsers) -> Outcome:
    """The keys are never shown: the form comes back with them empty, and saving it keeps the stored ones."""
    target = backup_target(b.w.a)
    keys = _keys(target)
    r = b.post(change_url(target), b.form(change_url(target), {"folder": "changed"}))
    assert _keys(target) == keys, "saving the form without keys changed the stored keys"
    changed = BackupTarget.objects.get(pk=target.pk).folder == "changed"
    return Outcome(b.w.may("backuptarget.change", b.w.a.cluster), r, changed, shown_refusal=FORM)


@case("backups.backuptarget:change@move")
def target_move(b: Browsers) -> Outcome:
    """Cluster A's target is pointed at tenant B's cluster: the change must be allowed at both ends."""
    w = b.w
    target = backup_target(w.a)
    r = b.post(change_url(target), b.form(change_url(target), {"cluster": w.b.cluster.pk}))
    moved = BackupTarget.objects.get(pk=target.pk).cluster_id == w.b.cluster.pk
    expected = (w.may("backuptarget.change", w.a.cluster) and w.may("backuptarget.change", w.b.cluster)
                and w.sees_cluster(w.b.cluster))
    return Outcome(expected, r, moved, shown_refusal=FORM)


@case("backups.backuptarget:change@fleet-target")
def fleet_target_change(b: Browsers) -> Outcome:
    target = fleet_target(b.w)
    r = b.post(change_url(target), b.form(change_url(target), {"folder": "changed"}))
    changed = BackupTarget.objects.get(pk=target.pk).folder == "changed"
    return Outcome(b.w.may("backuptarget.change"), r, changed, shown_refusal=FORM)


@case("backups.snapshot:url:backups_snapshot_take")
def snapshot_take(b: Browsers) -> Outcome:
    """The cluster page's "Take snapshot" button."""
    cluster = b.w.a.cluster
    r = b.post(f"{_path(Snapshot)}take/{cluster.pk}/")
    taken = Snapshot.objects.filter(cluster=cluster).first()
    if taken is not None:
        assert exists(Job, kind="backups.snapshot", pk=taken.job_id), "a snapshot without its job"
    return Outcome(b.w.may("cluster.snapshot", cluster), r, taken is not None, shown_refusal=(302,))


def _restore(b: Browsers, snapshot: Snapshot) -> Outcome:
    r = b.post(f"{_path(Snapshot)}{snapshot.pk}/restore/", {"parts": "etcd"})
    cluster = snapshot.cluster
    expected = b.w.may("cluster.restore", cluster) and b.w.may("snapshot.view", cluster)
    return Outcome(expected, r, exists(Restore, snapshot=snapshot), shown_refusal=(200,))


@case("backups.snapshot:url:backups_snapshot_restore")
def snapshot_restore(b: Browsers) -> Outcome:
    return _restore(b, ready_snapshot(b.w.a))


@case("backups.snapshot:url:backups_snapshot_restore@other-tenant")
def snapshot_restore_elsewhere(b: Browsers) -> Outcome:
    """Tenant B's snapshot, by id."""
    return _restore(b, ready_snapshot(b.w.b))


@case("backups.snapshot:action:delete_everywhere")
def snapshot_delete_everywhere(b: Browsers) -> Outcome:
    snapshot = ready_snapshot(b.w.a)
    r = b.action(Snapshot, "delete_everywhere", [snapshot])
    return Outcome(b.w.may("snapshot.delete", b.w.a.cluster), r, deletion_queued(snapshot), refused_status=ACTION)


# --- admins that never write: a POST to their pages is refused -----------------------------------------------

def _postable(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None and not isinstance(v, (list, dict))}


def _refusal_cases(model: type[Model], ops: list[str]) -> None:
    make = SAMPLES[model]
    if "add" in ops:
        @case(f"{label(model)}:add@read-only")
        def add(b: Browsers) -> Outcome:
            obj = make(b.w)
            count = model._default_manager.count()
            r = b.post(add_url(model), _postable(model_to_dict(obj)))
            return Outcome(False, r, model._default_manager.count() != count)

    if "change" in ops:
        @case(f"{label(model)}:change@read-only")
        def change(b: Browsers) -> Outcome:
            obj = make(b.w)
            before = row(obj)
            data = _postable(before)
            r = b.post(change_url(obj), {**data, **{f: "x" for f in ("name", "description", "message") if f in data}})
            return Outcome(False, r, row(obj) != before)

    if "delete" in ops:
        @case(f"{label(model)}:delete@read-only")
        def delete(b: Browsers) -> Outcome:
            obj = make(b.w)
            r = b.post(delete_url(obj), {"post": "yes"})
            return Outcome(False, r, not exists(model, pk=obj.pk))


# --- what the admin offers, read from its registry ----------------------------------------------------------

STANDARD_URLS = ("changelist", "add", "history", "delete", "change", "autocomplete")


def portal_admins() -> list[tuple[type[Model], PortalModelAdmin]]:
    return [(m, a) for m, a in admin.site._registry.items() if isinstance(a, PortalModelAdmin)]


def _request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def admin_writes(root, samples: dict[type[Model], Model]) -> tuple[set[str], dict[type[Model], list[str]]]:
    """Every write the admin could let someone make (judged as a superuser), and the pages that never write."""
    writes, never = set(), {}
    for model, model_admin in portal_admins():
        request, obj, name = _request(root), samples[model], label(model)
        possible = {"add": model_admin.has_add_permission(request),
                    "change": model_admin.has_change_permission(request, obj),
                    "delete": model_admin.has_delete_permission(request, obj)}
        writes |= {f"{name}:{op}" for op, yes in possible.items() if yes}
        never[model] = [op for op, yes in possible.items() if not yes]
        writes |= {f"{name}:action:{action}" for action in model_admin.get_actions(request)}
        for url in model_admin.get_urls():
            if url.name and url.name not in {f"{model._meta.app_label}_{model._meta.model_name}_{s}"
                                             for s in STANDARD_URLS}:
                writes.add(f"{name}:url:{url.name}")
        if possible["change"]:
            for inline in model_admin.get_inline_instances(request, obj):
                prefix = inline.get_formset(request, obj).get_default_prefix()
                if inline.has_add_permission(request, obj):
                    writes.add(f"{name}:inline:{prefix}:add")
                if inline.has_change_permission(request, obj):
                    writes.add(f"{name}:inline:{prefix}:change")
                if inline.can_delete and inline.has_delete_permission(request, obj):
                    writes.add(f"{name}:inline:{prefix}:delete")
    return writes, never


def _ensure_refusal_cases(never: dict[type[Model], list[str]]) -> None:
    for model, ops in never.items():
        missing = [op for op in ops if f"{label(model)}:{op}@read-only" not in CASES]
        if missing:
            _refusal_cases(model, missing)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Six users per world and a few password pages: Django's real hasher would take most of the run."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin_world(db):
    return make_world("user")


def test_every_admin_write_has_a_case(admin_world):
    w = admin_world
    unguarded = [label(m) for m, a in admin.site._registry.items()
                 if not isinstance(a, PortalModelAdmin) and not is_admin_only(a)]
    assert not unguarded, f"admin pages outside the write rule (neither PortalModelAdmin nor admin-only): {unguarded}"
    unsampled = [label(m) for m, _a in portal_admins() if m not in SAMPLES]
    assert not unsampled, f"admins without a sample object in {__file__}: {unsampled}"
    samples = {model: make(w) for model, make in SAMPLES.items()}
    writes, never = admin_writes(w.root, samples)
    missing = sorted(writes - set(CASES))  # a variant (``key@...``) adds to its write's case, never replaces it
    assert not missing, f"admin writes without a generated permission test in {__file__}: {missing}"
    no_delete_oracle = sorted(label(m) for m, _a in portal_admins() if f"{label(m)}:delete" in writes
                              and m not in MAY_DELETE)
    assert not no_delete_oracle, f"deletable in admin but no MAY_DELETE answer: {no_delete_oracle}"
    _ensure_refusal_cases(never)
    refusals = {f"{label(m)}:{op}@read-only" for m, ops in never.items() for op in ops}
    assert refusals <= set(CASES)
    assert {"clusters.node:add@read-only", "portal.auditevent:delete@read-only", "clusters.upgrade:change@read-only",
            "portal.job:add@read-only"} <= refusals, "the read-only admins are found"


# --- the generated tests -------------------------------------------------------------------------------------

class _Undo(Exception):
    pass


def _messages(response) -> list:
    """The messages of this answer, whether its page showed them or they wait for the next one."""
    storage = getattr(response.wsgi_request, "_messages", None)
    return [] if storage is None else [*storage._loaded_messages, *storage._queued_messages]


def _why(response) -> str:
    said = "; ".join(f"{m.level_tag}: {m}" for m in _messages(response))
    if response.status_code in (301, 302):
        return f"→ {response['Location']} {said}"
    page = response.content.decode(errors="replace")
    errors = re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', page, re.S)
    note = re.findall(r'<p class="errornote">(.*?)</p>', page, re.S)
    shown = " | ".join(re.sub(r"<[^>]+>", " ", e).strip() for e in note + errors)
    return f"{shown or page[:300]} {said}".strip()


def _says_no(response) -> bool:
    if any(m.level >= messages.WARNING for m in _messages(response)):
        return True
    page = response.content.decode(errors="replace") if response.status_code == 200 else ""
    return 'class="errornote"' in page or 'class="errorlist' in page


def _judge(role: str, key: str, outcome: Outcome, grants_before: tuple, grants_after: tuple) -> str | None:
    status = outcome.response.status_code
    if outcome.expected:
        if status not in outcome.allowed_status:
            return f"{role} should be allowed {key}: {status} {_why(outcome.response)}"
        if outcome.changed is False:
            return f"{role}: {key} answered {status} but changed nothing: {_why(outcome.response)}"
        return None
    if status not in outcome.refused_status and not (status in outcome.shown_refusal and _says_no(outcome.response)):
        return f"{role} must be refused {key}: {status} {_why(outcome.response)}"
    if outcome.changed:
        return f"{role}: {key} was refused ({status}) but the database changed"
    if grants_after != grants_before:
        return f"{role}: {key} was refused ({status}) but the actor's permissions changed"
    return None


@pytest.mark.parametrize("role", list(KINDS))
def test_admin_writes_follow_the_permission_table(db, role, monkeypatch):
    """Every admin write, tried by one role; each try runs in a savepoint rolled back afterwards."""
    monkeypatch.setattr(inventory, "check_kubeconfig", _fake_look)  # an import contacts no cluster
    world = make_world(role)
    with transaction.atomic():
        _, never = admin_writes(world.root, {model: make(world) for model, make in SAMPLES.items()})
        transaction.set_rollback(True)
    _ensure_refusal_cases(never)
    actor, root = Client(), Client()
    actor.force_login(world.actor)
    root.force_login(world.root)
    browsers = Browsers(world, actor, root)
    problems = []
    for key in sorted(CASES):
        try:
            with transaction.atomic():
                before = grants_snapshot(world.actor)
                outcome = CASES[key](browsers)
                problems.append(_judge(role, key, outcome, before, grants_snapshot(world.actor)))
                raise _Undo
        except _Undo:
            pass
        for client, user in ((actor, world.actor), (root, world.root)):
            if "_auth_user_id" not in client.session:  # a password change cycled the session, now rolled back
                client.force_login(user)
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)
