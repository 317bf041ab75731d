"""clusters.nodeops: installing system-upgrade-controller, clear errors when it cannot, following nodes with a watch."""
from __future__ import annotations

import pytest

from clusters import kube
from clusters.nodeops import ClusterApi, NodeWatcher, Operation, hostname_selector, plan_body, suc
from clusters.upgrades.testing import rke_cluster

NAME = "no"


@pytest.fixture
def sim():
    from kubesim import start_fleet

    fleet = start_fleet({"clusters": [rke_cluster(NAME, {"etcd": 1, "controlplane": 1, "worker": 1}, replicas=0)]})
    yield fleet
    fleet.stop()


def test_installs_suc_on_a_cluster_that_lacks_it(sim):
    api = ClusterApi(sim.kubeconfig(NAME))
    try:
        assert set(suc.missing(api)) == {"CustomResourceDefinition plans.upgrade.cattle.io",
                                         "Deployment system-upgrade/system-upgrade-controller"}
        said = []
        assert suc.ensure_installed(api, log=said.append, timeout=30) is True
        assert suc.missing(api) == []
        deployment = api.request("GET", "/apis/apps/v1/namespaces/system-upgrade/deployments/system-upgrade-controller")
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "rancher/system-upgrade-controller:v0.14.0"
        assert "installing it" in said[0] and "system-upgrade-controller is available" in said[-1]
        assert suc.ensure_installed(api, timeout=5) is False  # already there: nothing to do
    finally:
        api.close()


class FakeApi:
    """Answers like a cluster where Corral's credentials may read but not create."""

    server = "https://fake"

    def __init__(self, *, forbid: bool = True):
        self.forbid = forbid

    def exists(self, path):
        return None

    def request(self, method, path, body=None, **kw):
        if self.forbid:
            raise kube.ClusterError('clusterroles.rbac.authorization.k8s.io is forbidden: User "corral" cannot create',
                                    status=403)
        return {}


def test_install_forbidden_names_what_is_missing_and_why():
    with pytest.raises(suc.ControllerMissing) as exc:
        suc.ensure_installed(FakeApi(), timeout=1)
    reason = exc.value.reason
    assert "CustomResourceDefinition plans.upgrade.cattle.io" in reason and "forbidden" in reason
    assert "Namespace system-upgrade" in reason


def test_install_that_never_becomes_available_times_out_with_the_gap():
    with pytest.raises(suc.ControllerMissing, match="did not become ready within 0 s.*Deployment system-upgrade"):
        suc.ensure_installed(FakeApi(forbid=False), timeout=0.3)


def test_old_clusters_get_the_v1beta1_crd():
    crd = next(o for o in suc.manifest_objects() if o["kind"] == "CustomResourceDefinition")
    old = suc.crd_v1beta1(crd)
    assert old["apiVersion"] == "apiextensions.k8s.io/v1beta1" and old["spec"]["version"] == "v1"
    assert old["spec"]["subresources"] == {"status": {}}


def test_batch_plan_targets_exactly_its_nodes():
    op = Operation.kubelet_args("rke", {"max-pods": 250})
    body = plan_body("corral-1-kubelet-b3", op, selector=hostname_selector(["w-2", "w-1"]), concurrency=2)
    spec = body["spec"]
    assert spec["nodeSelector"] == {"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["w-1", "w-2"]}]}
    assert spec["upgrade"] == {"image": "corral/node-config", "args": ["--kubelet-arg=max-pods=250"]}
    assert (spec["concurrency"], spec["cordon"], spec["serviceAccountName"]) == (2, False, "system-upgrade")
    assert {"key": "node-role.kubernetes.io/etcd", "operator": "Exists"} in spec["tolerations"]
    assert Operation.kubernetes_version("k3s", "v1.17.5+k3s1").image == "rancher/k3s-upgrade"


def test_watch_follows_changes_and_lists_again_after_410(sim):
    from kubernetes import client

    api = ClusterApi(sim.kubeconfig(NAME))
    watcher = NodeWatcher(api).start()
    try:
        first_rv = watcher.resource_version
        node = f"{NAME}-worker-1"
        for i in range(130):  # more changes than the watch cache keeps
            api.patch_node(node, {"metadata": {"labels": {"corral.io/test": str(i)}}})
        seen = watcher.generation
        while watcher.snapshot()[node]["metadata"]["labels"].get("corral.io/test") != "129":
            seen = watcher.wait(seen, 5)
        requests_before = api.requests
        watcher.stop()
        # A watch from the first version is too old now: the watcher must list again.
        again = NodeWatcher(api)
        again.resource_version = first_rv
        again.nodes = {}
        again._stop.clear()
        import threading

        thread = threading.Thread(target=again._run, daemon=True)
        thread.start()
        generation = 0
        for _ in range(50):
            generation = again.wait(generation, 0.2)
            if again.lists:
                break
        assert again.lists == 1 and node in again.snapshot()
        again.stop()
        thread.join(5)
        assert api.requests - requests_before <= 4
    finally:
        watcher.stop()
        api.close()
    assert client  # the official client is what ClusterApi wraps
