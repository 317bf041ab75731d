"""SAML 2.0 single sign-on (Shibboleth first-class) on top of django-allauth's SAML provider.

How the pieces fit:

- :class:`portal.sso.models.SSOProvider` holds one IdP's configuration in the database
  (metadata, entity ids, attribute map, SP key pair with the key encrypted at rest).
- :class:`portal.sso.adapter.SocialAccountAdapter` hands allauth an *unsaved* ``SocialApp``
  built from each SSOProvider row whenever allauth asks for one; no ``SocialApp`` rows are
  kept, so there is one source of truth and the private key is only ever decrypted in memory.
- :class:`portal.sso.provider.CorralSAMLProvider` (allauth's documented ``provider_class``
  hook) reads the attribute map, refuses replayed responses and disabled providers, and
  explains every refusal in words.
- :func:`portal.sso.services.sync_saml_login` creates or updates the user and replaces
  their IdP groups, with the audit rows, in one transaction; :func:`portal.sso.views.finish_acs`
  runs allauth's ACS completion inside that transaction so the login itself is part of it.
- :class:`portal.sso.backends.LocalLoginGate` turns password login off when
  :class:`portal.sso.models.SSOSettings` says so (break-glass: see that class).
"""
