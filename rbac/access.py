"""The one permission layer. API viewsets, admin pages and serializers all ask it.

Rules in plain words:
- An admin (global ``*``, or a Django superuser) may do everything.
- A global role grants its permissions on every object of the resource.
- A cluster role binding grants its permissions on that cluster and everything in it
  (nodes, projects, snapshots, scans, apps, jobs).
- A project role binding grants its permissions on that project and its apps.
- A user sees a cluster when they may view it, or hold any role in one of its projects.
- A user sees a job they started, or one about a cluster where they may view jobs.
- Bindings to a group count for every member of the group.
- Anything no rule allows is denied.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Model, Q, QuerySet

from rbac.permissions import allows


@dataclass(frozen=True)
class Rule:
    """How a model is reached from the tenancy tree.

    ``cluster_path``/``project_path`` are ORM paths from the model to its cluster or
    project id ("pk" for the cluster itself). A model with neither is global: only
    global roles decide. ``owner_path`` names a user field whose user may always view.
    """

    resource: str
    cluster_path: str | None = None
    project_path: str | None = None
    owner_path: str | None = None
    owner_actions: tuple[str, ...] = ("view",)


_rules: dict[type[Model], Rule] = {}


def register(model: type[Model], rule: Rule) -> None:
    _rules[model] = rule


def rule_for(model: type[Model]) -> Rule:
    try:
        return _rules[model]
    except KeyError:
        raise LookupError(f"{model._meta.label} has no access rule; it is hidden from everyone but admins") from None


@dataclass
class Grants:
    """Everything one user is allowed, computed once per request from their bindings."""

    user_id: int | None
    global_perms: set[str] = field(default_factory=set)
    clusters: dict[int, set[str]] = field(default_factory=dict)
    projects: dict[int, set[str]] = field(default_factory=dict)
    project_cluster: dict[int, int] = field(default_factory=dict)

    def is_admin(self) -> bool:
        return "*" in self.global_perms

    def global_allows(self, perm: str) -> bool:
        return allows(self.global_perms, perm)

    def cluster_allows(self, cluster_id: int | None, perm: str) -> bool:
        return cluster_id is not None and allows(self.clusters.get(cluster_id, set()), perm)

    def project_allows(self, project_id: int | None, perm: str) -> bool:
        if project_id is None:
            return False
        if allows(self.projects.get(project_id, set()), perm):
            return True
        return self.cluster_allows(self.project_cluster.get(project_id), perm)

    def clusters_allowing(self, perm: str) -> set[int]:
        ids = {cid for cid, perms in self.clusters.items() if allows(perms, perm)}
        if perm == "cluster.view":
            ids |= set(self.project_cluster[pid] for pid in self.projects)
        return ids

    def projects_allowing(self, perm: str) -> set[int]:
        return {pid for pid, perms in self.projects.items() if allows(perms, perm)}


def _compute_grants(user) -> Grants:
    from rbac.models import ClusterRoleBinding, GlobalRoleBinding, ProjectRoleBinding

    grants = Grants(user_id=user.pk)
    if not user.is_active:
        return grants
    if user.is_superuser:
        grants.global_perms.add("*")
    group_ids = list(user.corral_groups.values_list("pk", flat=True))
    subject = Q(user_id=user.pk) | Q(group_id__in=group_ids)
    for perms in GlobalRoleBinding.objects.filter(subject).values_list("role__permissions", flat=True):
        grants.global_perms.update(perms or [])
    for cluster_id, perms in ClusterRoleBinding.objects.filter(subject).values_list("cluster_id", "role__permissions"):
        grants.clusters.setdefault(cluster_id, set()).update(perms or [])
    for project_id, cluster_id, perms in ProjectRoleBinding.objects.filter(subject).values_list(
        "project_id", "project__cluster_id", "role__permissions"
    ):
        grants.projects.setdefault(project_id, set()).update(perms or [])
        grants.project_cluster[project_id] = cluster_id
    return grants


def grants_for(user) -> Grants:
    """Cached on the user object, which lives for one request; :func:`forget` drops it."""
    if user is None or not getattr(user, "is_authenticated", False):
        return Grants(user_id=None)
    cached = getattr(user, "_corral_grants", None)
    if cached is None:
        cached = _compute_grants(user)
        user._corral_grants = cached
    return cached


def forget(user) -> None:
    if user is not None:
        user.__dict__.pop("_corral_grants", None)


def restrict(queryset: QuerySet, user, action: str = "view") -> QuerySet:
    """The subset of ``queryset`` on which ``user`` may perform ``action``."""
    answer, grants, rule, perm = _global_answer(user, queryset.model, action)
    if answer is not None:
        return queryset if answer else queryset.none()
    q = Q(pk__in=[])
    if rule.cluster_path:
        q |= Q(**{f"{rule.cluster_path}__in": grants.clusters_allowing(perm)})
    if rule.project_path:
        q |= Q(**{f"{rule.project_path}__in": grants.projects_allowing(perm)})
    if rule.owner_path and action in rule.owner_actions:
        q |= Q(**{rule.owner_path: grants.user_id})
    return queryset.filter(q).distinct() if rule.project_path and rule.cluster_path else queryset.filter(q)


def _resolve(obj: Any, path: str):
    """Follow an ORM path such as ``project__cluster`` on an instance and return the id at its end."""
    if path == "pk":
        return obj.pk
    *hops, last = path.split("__")
    for hop in hops:
        obj = getattr(obj, hop, None)
        if obj is None:
            return None
    if last == "pk":
        return obj.pk
    return getattr(obj, f"{last}_id", getattr(obj, last, None))


def _global_answer(user, model: type[Model], action: str) -> tuple[bool | None, Grants, Rule | None, str]:
    """What can be answered without looking at an object: no user, admin, unknown model, global grant."""
    grants = grants_for(user)
    if grants.user_id is None:
        return False, grants, None, ""
    if grants.is_admin():
        return True, grants, None, ""
    try:
        rule = rule_for(model)
    except LookupError:
        return False, grants, None, ""
    perm = f"{rule.resource}.{action}"
    if grants.global_allows(perm):
        return True, grants, rule, perm
    return None, grants, rule, perm


def can(user, action: str, obj: Model) -> bool:
    """Whether ``user`` may perform ``action`` on ``obj`` (answered from memory, no query per object)."""
    answer, grants, rule, perm = _global_answer(user, obj.__class__, action)
    if answer is not None:
        return answer
    if rule.cluster_path:
        cluster_id = _resolve(obj, rule.cluster_path)
        if grants.cluster_allows(cluster_id, perm):
            return True
        if perm == "cluster.view" and cluster_id in grants.project_cluster.values():
            return True
    if rule.project_path and grants.project_allows(_resolve(obj, rule.project_path), perm):
        return True
    return bool(rule.owner_path and action in rule.owner_actions and _resolve(obj, rule.owner_path) == grants.user_id)


def can_create(user, model: type[Model], *, cluster_id: int | None = None, project_id: int | None = None) -> bool:
    """Whether ``user`` may add a ``model`` object, globally or under the given cluster or project."""
    answer, grants, _rule, perm = _global_answer(user, model, "add")
    if answer is not None:
        return answer
    if project_id is not None and grants.project_allows(project_id, perm):
        return True
    return cluster_id is not None and grants.cluster_allows(cluster_id, perm)


def may_add_somewhere(user, model: type[Model]) -> bool:
    """For showing an "Add" button: is there any place this user may add a ``model``?"""
    answer, grants, rule, perm = _global_answer(user, model, "add")
    if answer is not None:
        return answer
    return bool(rule.cluster_path and grants.clusters_allowing(perm)) or bool(
        rule.project_path and (grants.projects_allowing(perm) or grants.clusters_allowing(perm))
    )


def capabilities(user, obj: Model, actions: tuple[str, ...]) -> dict[str, bool]:
    """What the client may do with ``obj``: the API puts this in every object it returns."""
    return {action: can(user, action, obj) for action in actions}
