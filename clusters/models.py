"""Clusters and the projects that divide them into tenants."""
from __future__ import annotations

from django.conf import settings
from django.db import models

from portal.crypto import EncryptedTextField


class Cluster(models.Model):
    class Kind(models.TextChoices):
        RKE = "rke", "RKE"
        K3S = "k3s", "k3s"
        IMPORTED = "imported", "Imported"

    class State(models.TextChoices):
        PROVISIONING = "provisioning", "Provisioning"
        ACTIVE = "active", "Active"
        UPGRADING = "upgrading", "Upgrading"
        RESTORING = "restoring", "Restoring"
        UNAVAILABLE = "unavailable", "Unavailable"
        ERROR = "error", "Error"

    name = models.SlugField(max_length=63, unique=True, help_text="Lowercase letters, digits and dashes")
    description = models.CharField(max_length=300, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.IMPORTED)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PROVISIONING, db_index=True)
    state_reason = models.TextField(blank=True, help_text="Why the cluster is in this state, in words")
    kubernetes_version = models.CharField(max_length=64, blank=True)
    api_server = models.URLField(max_length=300, blank=True, editable=False)
    kubeconfig = EncryptedTextField(help_text="Kubeconfig with credentials; stored encrypted, never shown back")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_synced_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Project(models.Model):
    """A group of namespaces in one cluster: the unit of tenancy."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    namespaces = models.JSONField(default=list, blank=True, help_text="Namespaces that belong to this project")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cluster__name", "name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="clusters_project_unique_name")]

    def __str__(self) -> str:
        return f"{self.cluster.name}/{self.name}"
