"""kube-bench on simulated nodes: its JSON from the API server's real flags, and the ways it fails."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
import yaml
from conftest import FAST
from ksim_helpers import wait_until
from kubernetes import client, config

from kubesim import Fleet, start_fleet

BENCH_FLEET: dict[str, Any] = {
    "defaults": {"timings": FAST},
    "clusters": [
        {"name": "kb", "kind": "imported", "version": "v1.27.3",
         "nodes": [{"name": "kb-cp-1", "roles": ["controlplane"]},
                   {"name": "kb-worker-1", "roles": ["worker"],
                    "fail_kube_bench": {"output": "[INFO] 4 Worker Node Security Configuration\n"}}]},
    ],
}


@pytest.fixture
def sim() -> Iterator[Fleet]:
    f = start_fleet(BENCH_FLEET)
    try:
        yield f
    finally:
        f.stop()


def _run(api: Any, name: str, node: str, targets: str) -> tuple[str, int, str]:
    """A kube-bench Job as Corral runs it; (Job condition, container exit code, pod log)."""
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    batch.create_namespaced_job("default", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "hostPID": True, "restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "kube-bench", "image": "docker.io/aquasec/kube-bench:v0.15.6",
                            "command": ["kube-bench", "run", "--targets", targets, "--benchmark", "cis-1.8",
                                        "--json"]}]}}}})

    def finished() -> str:
        status = batch.read_namespaced_job(name, "default").status
        conds = (status.conditions if status else None) or []
        return next((c.type for c in conds if c.type in ("Complete", "Failed") and c.status == "True"), "")

    condition = wait_until(finished)
    pod = core.list_namespaced_pod("default", label_selector=f"job-name={name}").items[0]
    code = pod.status.container_statuses[0].state.terminated.exit_code
    return condition, code, core.read_namespaced_pod_log(pod.metadata.name, "default", container="kube-bench")


def _status(log: str, check: str) -> str:
    doc = json.loads(log)
    return next(r["status"] for c in doc["Controls"] for g in c["tests"] for r in g["results"]
                if r["test_number"] == check)


def test_kube_bench_answers_from_the_flags_and_fails_as_kube_bench_does(sim: Fleet) -> None:
    api = config.new_client_from_config_dict(yaml.safe_load(sim.kubeconfig("kb")))
    condition, code, log = _run(api, "bench-1", "kb-cp-1", "master")
    assert (condition, code) == ("Complete", 0) and _status(log, "1.2.16") == "FAIL"  # --profiling is on by default

    # The flag changes through the API, as kubeadm renders it: the mirror pod is replaced, kube-bench sees it.
    core = client.CoreV1Api(api)
    cm = core.read_namespaced_config_map("kubeadm-config", "kube-system")
    doc = yaml.safe_load(cm.data["ClusterConfiguration"])
    doc["apiServer"]["extraArgs"]["profiling"] = "false"
    core.patch_namespaced_config_map("kubeadm-config", "kube-system",
                                     {"data": {"ClusterConfiguration": yaml.safe_dump(doc)}})
    wait_until(lambda: "--profiling=false" in (core.read_namespaced_pod("kube-apiserver-kb-cp-1", "kube-system")
                                               .spec.containers[0].command))
    assert _status(_run(api, "bench-2", "kb-cp-1", "master")[2], "1.2.16") == "PASS"

    # kube-bench that finds none of the programs it checks: its fatal error, exit 1, the Job fails.
    sim.fail_node_kube_bench("kb", "kb-cp-1")
    condition, code, log = _run(api, "bench-3", "kb-cp-1", "master,controlplane")
    assert (condition, code) == ("Failed", 1)
    assert log.strip() == ('failed to get a set of executables needed for tests: '
                           'unable to detect running programs for component "apiserver"')

    # The same through the control API, with a message and an exit code of one's own; null clears it.
    http = urllib3.PoolManager(cert_reqs="CERT_NONE")
    urllib3.disable_warnings()
    base = f"{sim.base_url}/_sim/clusters/kb/nodes/kb-cp-1/fail-kube-bench"
    r = http.request("POST", base, body=b'{"message": "unable to load config file", "exit_code": 2}')
    assert next(n for n in json.loads(r.data)["nodes"] if n["name"] == "kb-cp-1")["failKubeBench"]
    assert _run(api, "bench-4", "kb-cp-1", "master")[1:] == (2, "\nunable to load config file\n")
    http.request("POST", base, body=b'{"message": null}')
    assert _run(api, "bench-5", "kb-cp-1", "master")[0] == "Complete"

    # The fleet file's {output, exit_code}: the worker's kube-bench prints text, not JSON, and exits 0.
    condition, code, log = _run(api, "bench-6", "kb-worker-1", "node")
    assert (condition, code) == ("Complete", 0) and log == "[INFO] 4 Worker Node Security Configuration\n"
