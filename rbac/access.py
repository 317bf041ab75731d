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

Writes (``check_write``), in API, admin and services alike:
- The caller holds the write's own action (add, change, delete, upgrade, ...) on the object
  as it will be saved, and for a change also where it was.
- Every related object the write points to is one the caller may see.
- Nobody grants what they do not hold: a role, binding, group membership or user they
  create or change may give only permissions the caller holds in that scope (``*`` only
  admins); tokens are personal, minted only for oneself unless one is an admin.
- The caller's grants are those from before the write, so a write cannot vouch for itself.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Model, Q, QuerySet

from rbac.permissions import ACTIONS, CLUSTER_SCOPED, RESOURCES, allows


@dataclass(frozen=True)
class Rule:
    """How a model is reached from the tenancy tree.

    ``cluster_path``/``project_path`` are ORM paths from the model to its cluster or
    project id ("pk" for the cluster itself). A model with neither is global: only
    global roles decide. ``owner_path`` names a user field whose user may always run
    ``owner_actions``. ``personal`` objects (API tokens) are reached by their owner only:
    a global grant of the resource covers one's own objects, never someone else's.
    """

    resource: str
    cluster_path: str | None = None
    project_path: str | None = None
    owner_path: str | None = None
    owner_actions: tuple[str, ...] = ("view",)
    personal: bool = False


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

    def perms_in(self, cluster_id: int | None = None, project_id: int | None = None) -> set[str]:
        """Every permission held in a scope: global ones, the cluster's, and the project's."""
        held = set(self.global_perms)
        if cluster_id is not None:
            held |= self.clusters.get(cluster_id, set())
        if project_id is not None:
            held |= self.projects.get(project_id, set())
        return held


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
    grants = grants_for(user)
    answer, rule, perm = _global_answer(grants, queryset.model, action)
    if answer is not None:
        return queryset if answer else queryset.none()
    q = Q(pk__in=[])
    if rule.personal:
        if grants.global_allows(perm):
            q = Q(**{rule.owner_path: grants.user_id})
        return queryset.filter(q)
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


def _global_answer(grants: Grants, model: type[Model], action: str) -> tuple[bool | None, Rule | None, str]:
    """What can be answered without looking at an object: no user, admin, unknown model, global grant."""
    if grants.user_id is None:
        return False, None, ""
    if grants.is_admin():
        return True, None, ""
    try:
        rule = rule_for(model)
    except LookupError:
        return False, None, ""
    perm = f"{rule.resource}.{action}"
    if grants.global_allows(perm) and not rule.personal:
        return True, rule, perm
    return None, rule, perm


def _scope(obj: Model, rule: Rule) -> tuple[int | None, int | None]:
    """The (cluster id, project id) an object lives in, as far as its rule says."""
    cluster_id = _resolve(obj, rule.cluster_path) if rule.cluster_path else None
    project_id = _resolve(obj, rule.project_path) if rule.project_path else None
    if cluster_id is None and project_id is not None and rule.project_path and rule.project_path != "pk":
        project = getattr(obj, rule.project_path.split("__")[0], None)
        cluster_id = getattr(project, "cluster_id", None)
    return cluster_id, project_id


def allowed(grants: Grants, action: str, obj: Model) -> bool:
    """:func:`can` for grants already in hand (those from before a write, say)."""
    answer, rule, perm = _global_answer(grants, obj.__class__, action)
    if answer is not None:
        return answer
    if rule.personal:
        return grants.global_allows(perm) and _resolve(obj, rule.owner_path) == grants.user_id
    cluster_id, project_id = _scope(obj, rule)
    if rule.cluster_path:
        if grants.cluster_allows(cluster_id, perm):
            return True
        if perm == "cluster.view" and cluster_id in grants.project_cluster.values():
            return True
    if rule.project_path and grants.project_allows(project_id, perm):
        return True
    return bool(rule.owner_path and action in rule.owner_actions and _resolve(obj, rule.owner_path) == grants.user_id)


def can(user, action: str, obj: Model) -> bool:
    """Whether ``user`` may perform ``action`` on ``obj`` (answered from memory, no query per object)."""
    return allowed(grants_for(user), action, obj)


def can_create(user, model: type[Model], *, cluster_id: int | None = None, project_id: int | None = None) -> bool:
    """Whether ``user`` may add a ``model`` object, globally or under the given cluster or project."""
    grants = grants_for(user)
    answer, rule, perm = _global_answer(grants, model, "add")
    if answer is not None:
        return answer
    if rule.personal:
        return grants.global_allows(perm)
    if project_id is not None and grants.project_allows(project_id, perm):
        return True
    return cluster_id is not None and grants.cluster_allows(cluster_id, perm)


def may_add_somewhere(user, model: type[Model]) -> bool:
    """For showing an "Add" button: is there any place this user may add a ``model``?"""
    grants = grants_for(user)
    answer, rule, perm = _global_answer(grants, model, "add")
    if answer is not None:
        return answer
    if rule.personal:
        return grants.global_allows(perm)
    return bool(rule.cluster_path and grants.clusters_allowing(perm)) or bool(
        rule.project_path and (grants.projects_allowing(perm) or grants.clusters_allowing(perm))
    )


def capabilities(user, obj: Model, actions: tuple[str, ...]) -> dict[str, bool]:
    """What the client may do with ``obj``: the API puts this in every object it returns."""
    return {action: can(user, action, obj) for action in actions}


# --- writes -------------------------------------------------------------------------------------------


class WriteRefused(PermissionDenied):
    """The permission layer refuses a write; the API answers 403, the admin its 403 page."""


def expand(perms: Iterable[str]) -> set[str]:
    """Every concrete ``resource.action`` a list of permissions (with wildcards) gives."""
    out: set[str] = set()
    for perm in perms:
        if perm == "*":
            return {f"{r}.{a}" for r in RESOURCES for a in ACTIONS}
        resource, _, action = perm.partition(".")
        if action == "*":
            out.update(f"{resource}.{a}" for a in ACTIONS)
        else:
            out.add(perm)
    return out


def scoped_resources() -> set[str]:
    """Resources a cluster or project binding can reach: the rest of its permissions give nothing there."""
    return set(CLUSTER_SCOPED) | {r.resource for r in _rules.values() if r.cluster_path or r.project_path}


def missing(held: set[str], perms: Iterable[str], *, scoped: bool = False) -> list[str]:
    """The permissions of ``perms`` (wildcards expanded) that ``held`` does not cover, sorted.

    ``scoped``: the permissions are bound to a cluster or project, so only those reaching
    objects inside one count (a cluster-owner's ``*`` gives no power over global roles).
    """
    if "*" in held:
        return []
    wanted = expand(perms)
    if scoped:
        reach = scoped_resources()
        wanted = {p for p in wanted if p.partition(".")[0] in reach}
    return sorted(p for p in wanted if not allows(held, p))


def _refuse_escalation(what: str, lacking: list[str]) -> None:
    if lacking:
        shown = ", ".join(lacking[:8]) + (f" and {len(lacking) - 8} more" if len(lacking) > 8 else "")
        raise WriteRefused(f"You may not {what}: it would give permissions you do not hold ({shown}).")


def _label(obj: Model) -> str:
    return obj._meta.verbose_name


def _may_see(grants: Grants, obj: Model) -> bool:
    try:
        rule_for(obj.__class__)  # __class__, not type(): request.user is a lazy proxy
    except LookupError:
        return True  # outside the tenancy tree (content types, ...): nothing to leak or reach
    return allowed(grants, "view", obj)


def _changed_relations(obj: Model, before: Model | None) -> Iterable[tuple[str, Model]]:
    for f in obj._meta.concrete_fields:
        if not f.is_relation or not f.editable:
            continue
        value = getattr(obj, f.attname)
        if value is None or (before is not None and getattr(before, f.attname) == value):
            continue
        yield f.verbose_name, getattr(obj, f.name)


def _moves_cluster(grants: Grants, action: str, obj: Model, before: Model) -> bool:
    """A change that carries an object to another cluster needs the action there from the cluster itself:
    grants bound to the object (a project role on a moved project) travel with it and prove nothing."""
    answer, rule, perm = _global_answer(grants, obj.__class__, action)
    if answer is not None or not rule.cluster_path:
        return False
    old, new = _scope(before, rule)[0], _scope(obj, rule)[0]
    return old != new and not grants.cluster_allows(new, perm)


def check_write(
    user,
    action: str,
    obj: Model,
    *,
    before: Model | None = None,
    related: dict[str, Iterable[Model]] | None = None,
) -> None:
    """The one write rule: raise :class:`WriteRefused` unless ``user`` may ``action`` ``obj`` as it will be saved.

    ``before`` is the stored object of a change (the caller must hold the action there too);
    ``related`` names many-to-many objects the write sets (a group's members, say). Called
    inside the write's transaction, before (and may be after) saving: the grants are the
    caller's from before the write. ``user`` None is the system (cron, workers): not checked.
    """
    if user is None:
        return
    grants = grants_for(user)
    if not allowed(grants, action, obj):
        raise WriteRefused(f"You may not {action} this {_label(obj)} here.")
    if before is not None and not allowed(grants, action, before):
        raise WriteRefused(f"You may not {action} this {_label(obj)} where it is now.")
    if before is not None and _moves_cluster(grants, action, obj, before):
        raise WriteRefused(f"You may not move this {_label(obj)} to that cluster.")
    for name, target in _changed_relations(obj, before):
        if not _may_see(grants, target):
            raise WriteRefused(f"{name}: no such {_label(target)} that you may see.")
    for name, targets in (related or {}).items():
        for target in targets:
            if not _may_see(grants, target):
                raise WriteRefused(f"{name}: no such {_label(target)} that you may see.")
    if not grants.is_admin():
        hook = _grant_checks.get(type(obj))
        if hook is not None:
            hook(grants, action, obj, before, related or {})


# Per-model escalation checks: what a write would grant, and where.
_grant_checks: dict[type[Model], Any] = {}


def register_grant_check(model: type[Model], check) -> None:
    """``check(grants, action, obj, before, related)`` raises WriteRefused when the write gives more than the caller holds."""
    _grant_checks[model] = check


def binding_scope(binding: Model) -> tuple[int | None, int | None]:
    """(cluster id, project id) a role binding applies to; (None, None) for a global one."""
    project = getattr(binding, "project", None) if hasattr(binding, "project_id") else None
    if project is not None:
        return project.cluster_id, project.pk
    return getattr(binding, "cluster_id", None), None


def check_bind(grants: Grants, action: str, binding: Model, before: Model | None, related: dict) -> None:
    """Binding a role: the caller must hold every permission of the role where it applies (Kubernetes' bind rule)."""
    if action == "delete" or binding.role_id is None:
        return
    cluster_id, project_id = binding_scope(binding)
    where = "here" if cluster_id is None else ("in this project" if project_id else "on this cluster")
    _refuse_escalation(f"grant role {binding.role} {where}",
                       missing(grants.perms_in(cluster_id, project_id), binding.role.permissions or [],
                               scoped=cluster_id is not None))


def check_role(grants: Grants, action: str, role: Model, before: Model | None, related: dict) -> None:
    """A role may hold only permissions its author holds everywhere (roles can be bound anywhere)."""
    if action == "delete":
        return
    _refuse_escalation(f"save role {role.name or ''}".strip(), missing(grants.perms_in(), role.permissions or []))


def group_grants(group: Model) -> list[tuple[int | None, int | None, list[str]]]:
    """What membership of ``group`` gives: (cluster id, project id, permissions) per binding."""
    from rbac.models import ClusterRoleBinding, GlobalRoleBinding, ProjectRoleBinding

    if group.pk is None:
        return []
    out = [(None, None, perms or []) for perms in
           GlobalRoleBinding.objects.filter(group=group).values_list("role__permissions", flat=True)]
    out += [(cid, None, perms or []) for cid, perms in
            ClusterRoleBinding.objects.filter(group=group).values_list("cluster_id", "role__permissions")]
    out += [(cid, pid, perms or []) for pid, cid, perms in
            ProjectRoleBinding.objects.filter(group=group).values_list("project_id", "project__cluster_id",
                                                                        "role__permissions")]
    return out


def check_group(grants: Grants, action: str, group: Model, before: Model | None, related: dict) -> None:
    """Adding someone to a group gives them the group's roles: only by someone who holds them all."""
    members = related.get("members")
    if members is None or action == "delete":
        return
    current = set(group.members.values_list("pk", flat=True)) if group.pk else set()
    if not {m.pk for m in members} - current:
        return
    for cluster_id, project_id, perms in group_grants(group):
        _refuse_escalation(f"add members to group {group}",
                           missing(grants.perms_in(cluster_id, project_id), perms, scoped=cluster_id is not None))


def user_perms(user_obj: Model) -> Grants:
    return _compute_grants(user_obj) if user_obj.pk else Grants(user_id=None)


def check_user(grants: Grants, action: str, target: Model, before: Model | None, related: dict) -> None:
    """Nobody edits or deletes a user holding more than they do (their password is their power), nor makes a superuser."""
    if action != "delete" and target.is_superuser and not (before is not None and before.is_superuser):
        raise WriteRefused("Only admins may make a user a superuser.")
    stored = target if action == "delete" else before
    if stored is None or stored.pk == grants.user_id:
        return
    what = f"{action} user {stored}"
    theirs = user_perms(stored)
    _refuse_escalation(what, missing(grants.perms_in(), theirs.global_perms))
    for cluster_id, perms in theirs.clusters.items():
        _refuse_escalation(what, missing(grants.perms_in(cluster_id), perms, scoped=True))
    for project_id, perms in theirs.projects.items():
        cluster_id = theirs.project_cluster.get(project_id)
        _refuse_escalation(what, missing(grants.perms_in(cluster_id, project_id), perms, scoped=True))


def require(user, action: str, obj: Model) -> None:
    """For operations (sync, upgrade, cancel, ...): the service's own check, same rule as any write."""
    check_write(user, action, obj)
