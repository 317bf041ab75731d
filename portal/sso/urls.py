"""Included by ``portal/urls.py`` before the admin's and allauth's URLs, so these two take precedence."""
from django.urls import path

from portal.sso import views

urlpatterns = [
    path("admin/login/", views.admin_login, name="corral_admin_login"),
    path("accounts/saml/<str:organization_slug>/acs/finish/", views.finish_acs, name="corral_saml_finish_acs"),
]
