def register(router) -> None:
    from portal.sso.api.views import SSOProviderViewSet

    router.register("sso-providers", SSOProviderViewSet, basename="ssoprovider")
