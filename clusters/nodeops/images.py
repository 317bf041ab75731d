"""The container images Corral asks clusters to run (see README.md next to this file).

Pinned here, so an upgrade of Corral is what changes them, never a tag moving underneath.
"""
from __future__ import annotations

from django.conf import settings

# What system-upgrade-controller runs to replace a node's Kubernetes, per distribution; the Plan's
# version is the tag (``rancher/rke2-upgrade:v1.16.8`` — SUC replaces "+" by "-").
UPGRADE_IMAGES = {"rke": "rancher/rke2-upgrade", "k3s": "rancher/k3s-upgrade"}

# Corral's own image that writes kubelet arguments into the distribution's config and restarts it.
NODE_CONFIG_IMAGE = "corral/node-config"

# The system-upgrade-controller Corral installs when a cluster lacks one.
SUC_VERSION = "v0.14.0"
SUC_IMAGE = f"rancher/system-upgrade-controller:{SUC_VERSION}"


def upgrade_image(distribution: str) -> str:
    """The upgrade image for an rke (RKE2-style) or k3s cluster."""
    try:
        return UPGRADE_IMAGES[distribution]
    except KeyError:
        raise ValueError(f"Corral does not change the Kubernetes of {distribution} clusters") from None


def node_config_version() -> str:
    """The node-config image tag, pinned in settings (NODE_CONFIG_IMAGE_VERSION)."""
    return getattr(settings, "NODE_CONFIG_IMAGE_VERSION", "v0.1.0")
