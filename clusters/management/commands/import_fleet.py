"""Import every kubeconfig in a folder (e.g. the simulator's demo fleet) as a cluster owned by the admin."""
from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from clusters import inventory, kube
from clusters.models import Cluster


class Command(BaseCommand):
    help = "Import clusters from a folder of kubeconfig files (NAME.yaml); existing names are skipped."

    def add_arguments(self, parser) -> None:
        parser.add_argument("folder")
        parser.add_argument("--owner", default=None, help="Username that will own the clusters (default: first admin)")

    def handle(self, *args, folder: str, owner: str | None, **options) -> None:
        files = sorted(Path(folder).glob("*.yaml"))
        if not files:
            raise CommandError(f"no kubeconfig files (*.yaml) in {folder}")
        User = get_user_model()
        user = User.objects.filter(username=owner).first() if owner else User.objects.filter(is_superuser=True).first()
        for path in files:
            name = path.stem
            text = path.read_text()
            existing = Cluster.objects.filter(name=name).first()
            if existing is not None:
                if existing.kubeconfig != text:
                    try:
                        inventory.replace_kubeconfig(existing, text, user=user)
                    except (kube.KubeconfigError, kube.ClusterError) as exc:
                        self.stderr.write(f"{name}: new kubeconfig refused: {exc}")
                        continue
                    self.stdout.write(f"{name}: already imported; kubeconfig updated")
                else:
                    self.stdout.write(f"{name}: already imported")
                continue
            try:
                cluster = inventory.import_cluster(name=name, kubeconfig=text, user=user,
                                                   description=f"imported from {path}")
            except (kube.KubeconfigError, kube.ClusterError) as exc:
                self.stderr.write(f"{name}: not imported: {exc}")
                continue
            self.stdout.write(self.style.SUCCESS(
                f"{name}: {cluster.get_kind_display()} {cluster.kubernetes_version}, {cluster.node_count} nodes"))
