from django.apps import AppConfig


class RbacConfig(AppConfig):
    name = "rbac"
    verbose_name = "Access control"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_migrate

        from rbac.builtin import sync_builtin_roles

        post_migrate.connect(sync_builtin_roles, sender=self)
        from django.db.models.signals import post_save

        from rbac.builtin import bind_default_role

        post_save.connect(bind_default_role, sender=get_user_model(), dispatch_uid="corral_default_role")

        from portal.models import ApiToken, AuditEvent, Job
        from rbac import access, models

        rule = access.Rule
        access.register(models.Group, rule("group"))
        access.register(models.GlobalRole, rule("globalrole"))
        access.register(models.RoleTemplate, rule("roletemplate"))
        access.register(models.GlobalRoleBinding, rule("globalrolebinding"))
        access.register(models.ClusterRoleBinding, rule("clusterrolebinding", cluster_path="cluster"))
        access.register(
            models.ProjectRoleBinding,
            rule("projectrolebinding", cluster_path="project__cluster", project_path="project"),
        )
        access.register(get_user_model(), rule("user", owner_path="pk"))
        access.register(
            Job, rule("job", cluster_path="cluster", owner_path="created_by", owner_actions=("view", "cancel", "resume"))
        )
        access.register(AuditEvent, rule("auditlog", cluster_path="cluster", owner_path="user"))
        # Tokens are personal: "apitoken.*" means one's own tokens; only admins reach others'.
        access.register(ApiToken, rule("apitoken", owner_path="user", personal=True))

        access.register_grant_check(models.GlobalRole, access.check_role)
        access.register_grant_check(models.RoleTemplate, access.check_role)
        access.register_grant_check(models.GlobalRoleBinding, access.check_bind)
        access.register_grant_check(models.ClusterRoleBinding, access.check_bind)
        access.register_grant_check(models.ProjectRoleBinding, access.check_bind)
        access.register_grant_check(models.Group, access.check_group)
        access.register_grant_check(get_user_model(), access.check_user)
