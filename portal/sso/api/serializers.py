"""``/v3/sso-providers/``: SSO provider configuration; the SP private key is write-only and shown masked."""
from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from portal.api.serializers import PortalSerializer, SecretField
from portal.sso import config, keys, services
from portal.sso.models import SSOProvider

DERIVED = [
    "idp_sso_url", "idp_slo_url", "idp_signing_certs", "idp_scopes", "idp_wants_signed_requests",
    "idp_metadata_valid_until", "idp_metadata_fetched_at",
]


class SSOProviderSerializer(PortalSerializer):
    sp_private_key = SecretField(required=False, allow_blank=True)
    urls = serializers.SerializerMethodField(help_text="Corral's SAML endpoints for this provider")

    class Meta:
        model = SSOProvider
        fields = [
            "id", "name", "slug", "enabled",
            "idp_metadata_url", "idp_metadata_xml", "idp_metadata_signing_cert", "idp_entity_id", *DERIVED,
            "sp_entity_id", "sp_certificate", "sp_private_key", "urls",
            "attr_uid", "uid_from_nameid", "attr_display_name", "attr_first_name", "attr_last_name", "attr_email",
            "attr_groups", "enforce_scope",
            "sign_authn_requests", "want_assertions_signed", "want_responses_signed", "want_assertions_encrypted",
            "signature_algorithm", "digest_algorithm", "name_id_format", "allow_idp_initiated",
            "created_at", "updated_at", "capabilities",
        ]
        read_only_fields = ["id", *DERIVED, "created_at", "updated_at", "capabilities"]

    def get_urls(self, obj) -> dict[str, str]:
        request = self.context.get("request")
        if request is None:
            return {}
        return {
            "sp_entity_id": config.sp_entity_id(obj, request),
            "metadata": config.metadata_url(obj, request),
            "acs": config.acs_url(obj, request),
            "login": config.login_url(obj, request),
        }

    def validate_slug(self, value: str) -> str:
        if self.instance is not None and value != self.instance.slug:
            raise serializers.ValidationError("The slug cannot change: accounts and groups of this provider are keyed by it.")
        return value

    def validate(self, attrs):
        instance = self.instance
        if instance is not None and not attrs.get("sp_private_key"):
            attrs.pop("sp_private_key", None)  # blank means "keep"
        probe = SSOProvider(**{
            f.name: attrs.get(f.name, getattr(instance, f.name) if instance else f.get_default())
            for f in SSOProvider._meta.concrete_fields if f.name not in ("id",)
        })
        if probe.sp_certificate or probe.sp_private_key:
            try:
                if not (probe.sp_certificate and probe.sp_private_key):
                    raise serializers.ValidationError("Give both sp_certificate and sp_private_key, or neither.")
                if not keys.key_matches_certificate(probe.sp_private_key, probe.sp_certificate):
                    raise serializers.ValidationError({"sp_private_key": "This key does not belong to sp_certificate."})
            except ValueError as exc:
                raise serializers.ValidationError({"sp_private_key": str(exc)}) from None
        url_changed = instance is None or attrs.get("idp_metadata_url", instance.idp_metadata_url) != instance.idp_metadata_url
        fetch = bool(probe.idp_metadata_url) and (
            (url_changed and "idp_metadata_xml" not in attrs) or not probe.idp_metadata_xml.strip()
        )
        try:
            services.apply_metadata(probe, fetch=fetch)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        for name in ["idp_metadata_xml", "idp_entity_id", *DERIVED]:
            if name == "idp_metadata_fetched_at" and not fetch:
                continue
            attrs[name] = getattr(probe, name)
        if not probe.sp_private_key:
            services.ensure_sp_key(probe)
            attrs["sp_certificate"], attrs["sp_private_key"] = probe.sp_certificate, probe.sp_private_key
        return attrs
