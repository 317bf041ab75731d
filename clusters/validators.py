"""What a cluster's name may be: it becomes part of URLs, kubeconfig contexts and Kubernetes labels."""
from __future__ import annotations

import re

from django.core.exceptions import ValidationError

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
NAME_RULE = ("Use a DNS label: lowercase letters, digits and dashes, starting and ending with a letter or digit, "
             "at most 63 characters (for example prod-eu-1).")


def validate_cluster_name(name: str) -> None:
    if not isinstance(name, str) or not DNS_LABEL.fullmatch(name):
        raise ValidationError(f"{name!r} is not a valid cluster name. {NAME_RULE}")
