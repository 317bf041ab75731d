"""Clusters, their nodes, their config history, and the projects that divide them into tenants."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

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
        UPGRADE_PAUSED = "upgrade-paused", "Upgrade paused"
        RESTORING = "restoring", "Restoring"
        UNAVAILABLE = "unavailable", "Unavailable"
        ERROR = "error", "Error"

    name = models.SlugField(max_length=63, unique=True, help_text="Lowercase letters, digits and dashes")
    description = models.CharField(max_length=300, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.IMPORTED)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PROVISIONING, db_index=True)
    state_reason = models.TextField(blank=True, help_text="Why the cluster is in this state, in words")
    kubernetes_version = models.CharField(max_length=64, blank=True, help_text="What the API server reports")
    api_server = models.URLField(max_length=300, blank=True, editable=False)
    kubeconfig = EncryptedTextField(help_text="Kubeconfig with credentials; stored encrypted, never shown back")
    insecure_tls = models.BooleanField(
        default=False, editable=False,
        help_text="The kubeconfig skips TLS verification; an admin allowed it at import (audited)",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_synced_at = models.DateTimeField(null=True, blank=True, editable=False)
    node_count = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def config(self) -> ClusterConfigVersion | None:
        return self.config_versions.order_by("-version").first()


class Node(models.Model):
    """A node as the last inventory sync saw it."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="nodes")
    name = models.CharField(max_length=253)
    uid = models.CharField(max_length=64, blank=True)
    roles = models.JSONField(default=list, blank=True)
    kubelet_version = models.CharField(max_length=64, blank=True)
    os_image = models.CharField(max_length=200, blank=True)
    kernel_version = models.CharField(max_length=100, blank=True)
    container_runtime = models.CharField(max_length=100, blank=True)
    internal_ip = models.CharField(max_length=64, blank=True)
    ready = models.BooleanField(default=False)
    unschedulable = models.BooleanField(default=False)
    conditions = models.JSONField(default=list, blank=True)
    capacity = models.JSONField(default=dict, blank=True)
    allocatable = models.JSONField(default=dict, blank=True)
    taints = models.JSONField(default=list, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    annotations = models.JSONField(default=dict, blank=True)
    created_in_cluster_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(default=timezone.now, help_text="When this record last changed")
    fingerprint = models.CharField(max_length=32, blank=True, editable=False,
                                   help_text="Digest of the synced fields; an unchanged node is not rewritten")

    class Meta:
        ordering = ["cluster__name", "name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="clusters_node_unique_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def state(self) -> str:
        if not self.ready:
            return "NotReady"
        return "Cordoned" if self.unschedulable else "Active"


class ClusterConfigVersion(models.Model):
    """One saved version of a cluster's config document; the newest is the config in force."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="config_versions")
    version = models.PositiveIntegerField()
    document = models.JSONField(help_text="The validated config, defaults filled in")
    source = models.TextField(blank=True, help_text="The YAML as it was written")
    comment = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["cluster", "-version"]
        constraints = [models.UniqueConstraint(fields=["cluster", "version"], name="clusters_config_unique_version")]

    def __str__(self) -> str:
        return f"{self.cluster.name} config v{self.version}"


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


class Upgrade(models.Model):
    """One rollout to a cluster's nodes — its Kubernetes version or its kubelet arguments — with the plan it
    follows and where it stands. Both kinds walk the same batches, drain rules and node states."""

    class Kind(models.TextChoices):
        KUBERNETES = "kubernetes", "Kubernetes version"
        KUBELET_ARGS = "kubelet-args", "Kubelet arguments"

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="upgrades")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.KUBERNETES)
    params = models.JSONField(default=dict, blank=True,
                              help_text="What the rollout sets besides the version, e.g. {\"kubelet_args\": {...}}")
    job = models.ForeignKey("portal.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    from_version = models.CharField(max_length=64, blank=True)
    to_version = models.CharField(max_length=64)
    mode = models.CharField(max_length=16, default="rolling", help_text="rolling, or parallel (the old behaviour)")
    strategy = models.JSONField(default=dict, blank=True, help_text="The upgrade strategy as it was at the start")
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        if self.kind == self.Kind.KUBELET_ARGS:
            args = ", ".join(f"{k}={v}" for k, v in sorted(((self.params or {}).get("kubelet_args") or {}).items()))
            return f"{self.cluster.name} kubelet arguments {args or '(none)'}"
        return f"{self.cluster.name} {self.from_version} → {self.to_version}"


class NodeUpgrade(models.Model):
    """A node's walk through an upgrade: Active → Cordoned → Draining → Drained → Upgrading → Upgraded → Active."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        CORDONED = "cordoned", "Cordoned"
        DRAINING = "draining", "Draining"
        DRAINED = "drained", "Drained"
        UPGRADING = "upgrading", "Upgrading"
        UPGRADED = "upgraded", "Upgraded"
        ACTIVE = "active", "Active"
        FAILED = "failed", "Failed"

    upgrade = models.ForeignKey(Upgrade, on_delete=models.CASCADE, related_name="nodes")
    node_name = models.CharField(max_length=253)
    role = models.CharField(max_length=32)
    batch = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    message = models.TextField(blank=True)
    cordoned_before = models.BooleanField(
        default=False, help_text="The node was cordoned before the upgrade; it stays cordoned afterwards"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["upgrade", "batch", "node_name"]
        constraints = [models.UniqueConstraint(fields=["upgrade", "node_name"], name="clusters_nodeupgrade_unique")]

    def __str__(self) -> str:
        return f"{self.node_name}: {self.state}"


class NodeTransition(models.Model):
    """Every state change of a node during an upgrade, with its time."""

    node_upgrade = models.ForeignKey(NodeUpgrade, on_delete=models.CASCADE, related_name="transitions")
    from_state = models.CharField(max_length=16)
    to_state = models.CharField(max_length=16)
    at = models.DateTimeField(default=timezone.now)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.from_state} → {self.to_state}"
