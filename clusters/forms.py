"""Admin forms for clusters: import by kubeconfig (checked), and config edited as YAML."""
from __future__ import annotations

from django import forms

from clusters import inventory, kube, schema
from clusters.models import Cluster
from portal.forms import SecretFormField, SecretsKeptForm


class ClusterForm(SecretsKeptForm):
    """Adding a cluster means importing it: the kubeconfig is tried before anything is saved."""

    kubeconfig = SecretFormField(help_text="Paste a kubeconfig with a token or client certificate. It is checked, "
                                           "stored encrypted and never shown again.")

    class Meta:
        model = Cluster
        fields = ["name", "description", "kubeconfig"]

    def clean_kubeconfig(self):
        value = self.cleaned_data.get("kubeconfig")
        if not value:
            return value
        try:
            self.cluster_view = inventory.check_kubeconfig(value)
        except kube.KubeconfigError as exc:
            raise forms.ValidationError(str(exc)) from None
        except kube.ClusterError as exc:
            raise forms.ValidationError(f"The cluster could not be used: {exc.reason}") from None
        return value


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
