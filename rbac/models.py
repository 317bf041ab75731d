"""Who may do what: groups, global roles, and role templates bound per cluster or project."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from rbac.permissions import validate_permissions


class Group(models.Model):
    """A set of users. Local groups are managed here; IdP groups are replaced at every SSO login."""

    name = models.CharField(max_length=200)
    provider = models.CharField(
        max_length=64, blank=True, help_text="Empty for a local group; the SSO provider for IdP groups"
    )
    description = models.CharField(max_length=300, blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="corral_groups")

    class Meta:
        ordering = ["provider", "name"]
        constraints = [models.UniqueConstraint(fields=["name", "provider"], name="rbac_group_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider})" if self.provider else self.name

    @property
    def is_external(self) -> bool:
        return bool(self.provider)


class Role(models.Model):
    """A named set of permissions such as ``cluster.view`` or ``app.*``."""

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True)
    builtin = models.BooleanField(default=False, editable=False)
    permissions = models.JSONField(default=list, blank=True, validators=[validate_permissions])

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class GlobalRole(Role):
    """Applies everywhere: admin, restricted-admin, user, user-base and custom ones."""


class RoleTemplate(Role):
    """A role applied to one cluster or one project through a binding."""

    class Context(models.TextChoices):
        CLUSTER = "cluster", "Cluster"
        PROJECT = "project", "Project"

    context = models.CharField(max_length=16, choices=Context.choices)


def one_subject(name: str) -> models.CheckConstraint:
    """A binding names exactly one user or one group."""
    return models.CheckConstraint(
        condition=models.Q(user__isnull=False, group__isnull=True) | models.Q(user__isnull=True, group__isnull=False),
        name=name,
    )


class Binding(models.Model):
    """Grants a role to exactly one user or one group."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )

    class Meta:
        abstract = True

    @property
    def subject(self):
        return self.user or self.group

    def clean(self) -> None:
        if bool(self.user_id) == bool(self.group_id):
            raise ValidationError("Bind the role to either a user or a group, not both or neither.")


class GlobalRoleBinding(Binding):
    role = models.ForeignKey(GlobalRole, on_delete=models.CASCADE, related_name="bindings")

    class Meta:
        ordering = ["id"]
        constraints = [one_subject("rbac_grb_one_subject")]

    def __str__(self) -> str:
        return f"{self.role} → {self.subject}"


class ClusterRoleBinding(Binding):
    cluster = models.ForeignKey("clusters.Cluster", on_delete=models.CASCADE, related_name="role_bindings")
    role = models.ForeignKey(
        RoleTemplate, on_delete=models.PROTECT, related_name="cluster_bindings",
        limit_choices_to={"context": RoleTemplate.Context.CLUSTER},
    )

    class Meta:
        ordering = ["id"]
        constraints = [one_subject("rbac_crb_one_subject")]

    def __str__(self) -> str:
        return f"{self.role} on {self.cluster} → {self.subject}"

    def clean(self) -> None:
        super().clean()
        if self.role_id and self.role.context != RoleTemplate.Context.CLUSTER:
            raise ValidationError({"role": "Choose a cluster role template."})


class ProjectRoleBinding(Binding):
    project = models.ForeignKey("clusters.Project", on_delete=models.CASCADE, related_name="role_bindings")
    role = models.ForeignKey(
        RoleTemplate, on_delete=models.PROTECT, related_name="project_bindings",
        limit_choices_to={"context": RoleTemplate.Context.PROJECT},
    )

    class Meta:
        ordering = ["id"]
        constraints = [one_subject("rbac_prb_one_subject")]

    def __str__(self) -> str:
        return f"{self.role} on {self.project} → {self.subject}"

    def clean(self) -> None:
        super().clean()
        if self.role_id and self.role.context != RoleTemplate.Context.PROJECT:
            raise ValidationError({"role": "Choose a project role template."})

    @property
    def cluster(self):
        return self.project.cluster
