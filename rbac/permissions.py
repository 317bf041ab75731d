"""The permission vocabulary: ``<resource>.<action>``, with ``*`` wildcards.

Actions are view/add/change/delete plus the operations an operator runs
(upgrade, snapshot, restore, scan, install, cordon, drain, sync, cancel).
"""
from __future__ import annotations

from django.core.exceptions import ValidationError

CRUD = ("view", "add", "change", "delete")
OPERATIONS = ("upgrade", "snapshot", "restore", "scan", "install", "cordon", "drain", "sync", "cancel", "resume")
ACTIONS = CRUD + OPERATIONS

RESOURCES = (
    "cluster", "node", "project", "job", "snapshot", "backuptarget", "scan", "scanprofile", "catalog", "app",
    "notifier", "group", "globalrole", "roletemplate", "globalrolebinding", "clusterrolebinding",
    "projectrolebinding", "user", "auditlog", "ssoprovider", "apitoken",
)


def allows(granted: frozenset[str] | set[str], perm: str) -> bool:
    """True when a set of granted permissions covers ``perm`` (exact, ``resource.*`` or ``*``)."""
    if "*" in granted or perm in granted:
        return True
    resource, _, _action = perm.partition(".")
    return f"{resource}.*" in granted


def validate_permissions(value) -> None:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ValidationError("Permissions are a list of strings such as 'cluster.view' or 'app.*'.")
    bad = []
    for perm in value:
        if perm == "*":
            continue
        resource, dot, action = perm.partition(".")
        if not dot or resource not in RESOURCES or (action != "*" and action not in ACTIONS):
            bad.append(perm)
    if bad:
        raise ValidationError(
            f"Unknown permission(s): {', '.join(bad)}. Use <resource>.<action> with a resource from "
            f"{', '.join(RESOURCES)} and an action from {', '.join(ACTIONS)} or '*'."
        )


CLUSTER_SCOPED = ("cluster", "node", "project", "job", "snapshot", "scan", "app", "clusterrolebinding", "projectrolebinding")

BUILTIN_GLOBAL_ROLES: dict[str, tuple[str, list[str]]] = {
    "admin": ("Full control of Corral and every cluster", ["*"]),
    "restricted-admin": (
        "Manages every cluster and its projects, but not Corral's users, roles or SSO settings",
        [f"{r}.*" for r in CLUSTER_SCOPED] + ["backuptarget.*", "scanprofile.*", "catalog.*", "notifier.*",
                                               "group.view", "roletemplate.view", "globalrole.view", "user.view",
                                               "auditlog.view"],
    ),
    "user": (
        "May create clusters and use global catalogs; sees only what they are bound to",
        ["cluster.add", "catalog.view", "scanprofile.view", "roletemplate.view", "globalrole.view", "group.view",
         "user.view", "apitoken.*"],
    ),
    "user-base": ("May log in and nothing else until bound to a cluster or project", ["apitoken.*"]),
}

BUILTIN_ROLE_TEMPLATES: dict[str, tuple[str, str, list[str]]] = {
    "cluster-owner": ("cluster", "Full control of the cluster and all its projects", ["*"]),
    "cluster-member": (
        "cluster",
        "Sees the cluster and its nodes, runs scans, creates projects",
        ["cluster.view", "node.view", "project.add", "snapshot.view", "scan.view", "scan.add", "scan.scan",
         "job.view", "catalog.view", "app.view"],
    ),
    "project-owner": (
        "project",
        "Full control of the project: apps, namespaces and members",
        ["project.*", "app.*", "projectrolebinding.*", "job.view", "catalog.view"],
    ),
    "project-member": (
        "project", "Installs and manages apps in the project", ["project.view", "app.*", "job.view", "catalog.view"]
    ),
    "read-only": ("project", "Sees the project and its apps", ["project.view", "app.view", "job.view"]),
}
