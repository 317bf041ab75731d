"""``{% local_login_state as local %}``: whether the password form should be offered on the login page."""
from django import template

from portal.sso.backends import break_glass_active, local_login_enabled

register = template.Library()


@register.simple_tag
def local_login_state() -> dict:
    return {"enabled": local_login_enabled(), "break_glass": break_glass_active()}
