from rbac.api import views


def register(router) -> None:
    router.register("users", views.UserViewSet, basename="user")
    router.register("groups", views.GroupViewSet, basename="group")
    router.register("globalroles", views.GlobalRoleViewSet, basename="globalrole")
    router.register("roletemplates", views.RoleTemplateViewSet, basename="roletemplate")
    router.register("globalrolebindings", views.GlobalRoleBindingViewSet, basename="globalrolebinding")
    router.register("clusterrolebindings", views.ClusterRoleBindingViewSet, basename="clusterrolebinding")
    router.register("projectrolebindings", views.ProjectRoleBindingViewSet, basename="projectrolebinding")
