from notifiers.api.views import NotifierViewSet


def register(router) -> None:
    router.register("notifiers", NotifierViewSet, basename="notifier")
