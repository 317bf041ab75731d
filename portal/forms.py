"""Form pieces shared by every app's admin."""
from __future__ import annotations

from django import forms

from portal.crypto import mask


class SecretWidget(forms.Textarea):
    """Never renders the stored secret; shows its mask as a placeholder instead."""

    def __init__(self, attrs=None):
        super().__init__(attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false", **(attrs or {})})

    def get_context(self, name, value, attrs):
        attrs = dict(attrs or {})
        if value:
            attrs["placeholder"] = f"Stored: {mask(str(value))} (leave blank to keep)"
        return super().get_context(name, None, attrs)

    def format_value(self, value):
        return None


class SecretFormField(forms.CharField):
    widget = SecretWidget

    def __init__(self, *args, **kwargs):
        kwargs.pop("max_length", None)
        super().__init__(*args, **kwargs)

    def has_changed(self, initial, data) -> bool:
        return bool(data)


class SecretsKeptForm(forms.ModelForm):
    """A blank secret field on an existing object means "keep what is stored"."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            for name, field in self.fields.items():
                if isinstance(field, SecretFormField) and getattr(self.instance, name, None):
                    field.required = False

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk:
            for name, field in self.fields.items():
                if isinstance(field, SecretFormField) and not cleaned.get(name):
                    cleaned[name] = getattr(self.instance, name, "")
        return cleaned
