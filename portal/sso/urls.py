"""Included by ``portal/urls.py`` before the admin's and allauth's URLs, so these take precedence.

Every SAML view allauth mounts under ``accounts/saml/<slug>/`` is answered by Corral's wrapper
(same path and URL name, so ``reverse``/``resolve`` callers see no difference), so no request
reaches allauth unchecked.
"""
from django.urls import path

from portal.sso import views

SAML = "accounts/saml/<str:organization_slug>/"

urlpatterns = [
    path("admin/login/", views.admin_login, name="corral_admin_login"),
    path(f"{SAML}acs/", views.acs, name="saml_acs"),
    path(f"{SAML}acs/finish/", views.finish_acs, name="saml_finish_acs"),
    path(f"{SAML}sls/", views.sls, name="saml_sls"),
    path(f"{SAML}metadata/", views.metadata, name="saml_metadata"),
    path(f"{SAML}login/", views.login, name="saml_login"),
]
