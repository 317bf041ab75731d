"""The admin form for an SSO provider: fetches and checks the IdP metadata while the form is validated."""
from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from portal.forms import SecretsKeptForm
from portal.sso import keys, services
from portal.sso.models import SSOProvider


def _url_field(name: str) -> forms.URLField:
    model_field = SSOProvider._meta.get_field(name)
    return forms.URLField(label=model_field.verbose_name, help_text=model_field.help_text,
                          max_length=model_field.max_length, required=False, assume_scheme="https")


class SSOProviderForm(SecretsKeptForm):
    idp_metadata_url = _url_field("idp_metadata_url")

    class Meta:
        model = SSOProvider
        fields = "__all__"
        widgets = {
            "idp_metadata_xml": forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "style": "font-family:monospace"}),
            "idp_metadata_signing_cert": forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "style": "font-family:monospace"}),
            "sp_certificate": forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "style": "font-family:monospace"}),
        }

    def clean_sp_certificate(self) -> str:
        value = (self.cleaned_data.get("sp_certificate") or "").strip()
        if value:
            try:
                keys.load_certificate(value)
            except ValueError as exc:
                raise ValidationError(f"This is {exc}.") from None
            value = keys.to_pem(value)
        return value

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        key = cleaned.get("sp_private_key") or ""
        cert = cleaned.get("sp_certificate") or ""
        if key or cert:
            if not (key and cert):
                raise ValidationError("Give both the SP certificate and its private key, or neither (one is then generated).")
            try:
                if not keys.key_matches_certificate(key, cert):
                    raise ValidationError({"sp_private_key": "This private key does not belong to the SP certificate."})
            except ValueError as exc:
                raise ValidationError({"sp_private_key": f"This is {exc}."}) from None

        # Fetch metadata when the URL is new or changed, or when there is no XML yet; then parse whatever we have.
        probe = SSOProvider(**{
            name: cleaned.get(name, getattr(self.instance, name))
            for name in ("idp_metadata_url", "idp_metadata_xml", "idp_metadata_signing_cert", "idp_entity_id")
        })
        fetch = bool(probe.idp_metadata_url) and (
            "idp_metadata_url" in self.changed_data or not probe.idp_metadata_xml.strip()
        )
        services.apply_metadata(probe, fetch=fetch)
        for name in ("idp_metadata_xml", "idp_entity_id"):
            cleaned[name] = getattr(probe, name)
        self._metadata = probe
        return cleaned

    def _post_clean(self):
        super()._post_clean()
        probe = getattr(self, "_metadata", None)
        if probe is None:
            return
        for name in ("idp_sso_url", "idp_slo_url", "idp_signing_certs", "idp_scopes", "idp_wants_signed_requests",
                     "idp_metadata_valid_until"):
            setattr(self.instance, name, getattr(probe, name))
        if probe.idp_metadata_fetched_at:
            self.instance.idp_metadata_fetched_at = probe.idp_metadata_fetched_at
        services.ensure_sp_key(self.instance)
