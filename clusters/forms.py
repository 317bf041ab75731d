"""Admin forms for clusters: import by kubeconfig (checked), and config edited as YAML."""
from __future__ import annotations

from django import forms

from clusters import inventory, kube, schema
from clusters.models import Cluster
from clusters.validators import validate_cluster_name
from portal import audit
from portal.forms import SecretFormField, SecretsKeptForm

# Cluster names are unique across all tenants. A taken name gets this answer whoever holds it,
# in the admin and the API alike: "already exists" would confirm another tenant's cluster.
NAME_NOT_AVAILABLE = "This name is not available; choose another."


class ClusterForm(SecretsKeptForm):
    """Adding a cluster means importing it: the kubeconfig is tried before anything is saved."""

    kubeconfig = SecretFormField(help_text="Paste a kubeconfig with a token or client certificate. It is checked, "
                                           "stored encrypted and never shown again.")
    allow_insecure_tls = forms.BooleanField(
        required=False, label="Skip TLS verification (admins only; audited)",
        help_text="Accept a kubeconfig with insecure-skip-tls-verify: true. The server's certificate is then not "
                  "checked, so anyone on the way could read the credentials; prefer certificate-authority-data.",
    )
    user = None  # the signed-in user; when the admin does not set it, the request's (portal.audit's actor)

    class Meta:
        model = Cluster
        fields = ["name", "description", "kubeconfig"]
        error_messages = {"name": {"unique": NAME_NOT_AVAILABLE}}

    def clean_name(self):
        name = self.cleaned_data.get("name")
        validate_cluster_name(name)
        return name

    def clean_kubeconfig(self):
        self.new_kubeconfig = self.cleaned_data.get("kubeconfig") or ""
        return self.new_kubeconfig

    def clean(self):
        """A new kubeconfig is tried last, once everything else is valid: a refused form contacts nothing."""
        cleaned = super().clean()
        allow = bool(cleaned.get("allow_insecure_tls"))
        user = self.user if self.user is not None else audit.current_actor().user
        if allow and not inventory.may_skip_tls_verify(user):
            self.add_error("allow_insecure_tls", inventory.INSECURE_REFUSED)
        value = getattr(self, "new_kubeconfig", "")
        if not value or self.errors:
            return cleaned
        try:
            self.cluster_view = inventory.check_kubeconfig(value, allow_insecure=allow)
        except kube.KubeconfigError as exc:
            self.add_error("kubeconfig", str(exc))
        except kube.ClusterError as exc:
            self.add_error("kubeconfig", f"The cluster could not be used: {exc.reason}")
        else:
            self.instance.insecure_tls = self.cluster_view.insecure_tls
            taken = inventory.server_taken(self.cluster_view.server, user, exclude_pk=self.instance.pk)
            if taken:
                self.add_error("kubeconfig", taken)
        return cleaned


class ConfigYAMLForm(forms.Form):
    yaml = forms.CharField(widget=forms.Textarea(attrs={"rows": 32, "cols": 100, "spellcheck": "false",
                                                        "style": "font-family: monospace"}), strip=False)
    comment = forms.CharField(required=False, max_length=300)

    def __init__(self, *args, cluster: Cluster, **kwargs):
        super().__init__(*args, **kwargs)
        self.cluster = cluster

    def clean_yaml(self):
        text = self.cleaned_data["yaml"]
        try:
            doc = schema.parse_yaml(text)
            schema.validate(doc, kind=self.cluster.kind, current_version=self.cluster.kubernetes_version, source=text)
        except schema.ConfigError as exc:
            raise forms.ValidationError([schema.ConfigError.format(e) for e in exc.errors]) from None
        return text
