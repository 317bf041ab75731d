"""Scans against the simulator: both benchmarks and their profiles, every kind of result where it belongs."""
from __future__ import annotations

import json

import pytest

from portal.models import Job
from scans import services
from scans.models import Scan, ScanProfile


def _scan(cluster, profile_name, run_jobs, user=None) -> Scan:
    scan = services.request_scan(cluster, ScanProfile.objects.get(name=profile_name), user=user)
    run_jobs()
    scan.refresh_from_db()
    return scan


def _results(scan) -> dict[str, tuple[str, str]]:
    return {r.check_id: (r.result, r.reason) for r in scan.results.all()}


def test_rke_cis_14_permissive_and_hardened(scan_fleet, register, run_jobs):
    cluster = register(scan_fleet, "rke-old")
    permissive = _scan(cluster, "rke-cis-1.4-permissive", run_jobs)
    job = Job.objects.get(pk=permissive.job_id)
    assert job.status == "succeeded", job.error
    assert job.progress == 100
    r = _results(permissive)
    assert permissive.total == 108 and permissive.state == Scan.State.FAILED
    # Pass / Fail from kube-bench, evaluated against the simulated nodes' flags.
    assert r["1.1.29"][0] == "pass"  # --client-ca-file is set
    assert r["1.1.8"][0] == "fail"  # the API server's --profiling is on by default
    assert r["2.1.1"][0] == "pass"  # the kubelet's --anonymous-auth=false
    # Skipped by the profile, with its reason; N/A for RKE's layout and for flags gone in 1.15.
    assert r["1.1.11"] == ("skip", r["1.1.11"][1]) and "AlwaysPullImages" in r["1.1.11"][1]
    assert r["1.4.1"][0] == "na" and "Docker containers" in r["1.4.1"][1]
    assert r["1.1.9"][0] == "na" and "1.14" in r["1.1.9"][1]
    # Corral's own policy checks: the web Deployment lives in the default namespace; PSP is off.
    assert r["1.7.1"][0] == "fail" and "PodSecurityPolicy" in r["1.7.1"][1]
    assert r["1.6.2"][0] == "warn"  # manual
    assert permissive.skipped == 14 and permissive.errored == 0
    assert permissive.passed + permissive.failed + permissive.warned + permissive.not_applicable + permissive.skipped \
        + permissive.errored == permissive.total
    assert permissive.score == pytest.approx(100 * permissive.passed / (permissive.passed + permissive.failed), abs=0.1)
    sections = {s["section"]: s for s in permissive.sections}
    assert sections["1.1"]["skip"] >= 5 and sections["1.4"]["na"] >= 8
    raw = permissive.raw["kube_bench"]
    assert {x["role"] for x in raw} == {"controlplane", "etcd", "worker"}
    assert all(json.loads(x["output"])["Controls"] for x in raw)  # raw output kept as printed

    hardened = _scan(cluster, "rke-cis-1.4-hardened", run_jobs)
    h = _results(hardened)
    assert hardened.skipped == 0 and h["1.1.11"][0] == "fail" and h["1.7.2"][0] == "fail"
    assert hardened.failed > permissive.failed


def test_cis_18_on_k3s_and_kubernetes(scan_fleet, register, run_jobs):
    k3s = _scan(register(scan_fleet, "k3s-new"), "k3s-cis-1.8-permissive", run_jobs)
    r = _results(k3s)
    assert k3s.total == 130 and k3s.errored == 0, [x for x in r.items() if x[1][0] == "error"]
    assert r["1.1.1"][0] == "na" and "k3s" in r["1.1.1"][1]
    assert r["1.2.16"][0] == "fail" and r["1.2.2"][0] == "pass"
    assert r["5.2.2"][0] == "fail" and "pod-security.kubernetes.io/enforce" in r["5.2.2"][1]
    assert r["5.1.1"][0] == "fail" and "system-upgrade" in r["5.1.1"][1]  # SUC's account is cluster-admin
    assert r["1.2.17"][0] == "skip"
    assert r["5.1.9"][0] == "warn"

    kube = _scan(register(scan_fleet, "kube-new"), "cis-1.8-hardened", run_jobs)
    r = _results(kube)
    assert kube.skipped == 0 and kube.errored == 0
    assert r["1.1.12"][0] == "pass" and r["1.2.16"][0] == "fail" and r["4.2.1"][0] == "pass"
    assert {v[0] for v in r.values()} >= {"pass", "fail", "warn"}


BROKEN_BENCH_FLEET = {
    "defaults": {"timings": {"pod_start": 0.1, "job_run": 0.2, "heartbeat": 1, "node_grace": 4}},
    "clusters": [
        # kube-bench on the control-plane node sees none of the programs it checks and exits 1.
        {"name": "bench-exits", "kind": "imported", "version": "v1.27.3",
         "nodes": [{"name": "bench-exits-cp-1", "roles": ["controlplane"], "fail_kube_bench": True},
                   {"name": "bench-exits-worker-1", "roles": ["worker"]}]},
        # kube-bench on the worker prints its text report instead of JSON, and exits 0.
        {"name": "bench-text", "kind": "imported", "version": "v1.27.3",
         "nodes": [{"name": "bench-text-cp-1", "roles": ["controlplane"]},
                   {"name": "bench-text-worker-1", "roles": ["worker"],
                    "fail_kube_bench": {"output": "[INFO] 4 Worker Node Security Configuration\n"
                                                  "[INFO] 4.1 Worker Node Configuration Files\n"
                                                  "[PASS] 4.1.1 Ensure that the kubelet service file permissions "
                                                  "are set to 600 or more restrictive (Automated)\n"}}]},
    ],
}


@pytest.fixture
def broken_bench_fleet():
    from kubesim import start_fleet

    sim = start_fleet(BROKEN_BENCH_FLEET, time_scale=0.2)
    yield sim
    sim.stop()


def _node_checks(scan, sections: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    return {r.check_id: (r.result, r.reason) for r in scan.results.filter(source="kube-bench")
            if r.check_id.split(".")[0] in sections and r.result not in ("na", "skip")}


def test_a_node_check_kube_bench_cannot_answer_is_an_error_never_a_pass(broken_bench_fleet, register, run_jobs):
    """kube-bench that exits 1, or prints something other than its JSON, makes that node's checks Error (rancher
    #40818): never Pass, and the score counts them as not passing. Other nodes' checks and the API checks still run."""
    # The control plane's kube-bench exits 1 with kube-bench's own error: sections 1-3 are Error, with the reason.
    scan = _scan(register(broken_bench_fleet, "bench-exits"), "cis-1.8-hardened", run_jobs)
    assert Job.objects.get(pk=scan.job_id).status == "succeeded"  # the scan ran; some checks could not be judged
    plane = _node_checks(scan, ("1", "2", "3"))
    assert len(plane) >= 60 and {result for result, _ in plane.values()} == {"error"}
    reason = plane["1.2.16"][1]
    assert "kube-bench failed on bench-exits-cp-1" in reason
    assert 'unable to detect running programs for component "apiserver"' in reason
    workers = _node_checks(scan, ("4",))
    assert workers["4.2.1"][0] == "pass" and "error" not in {result for result, _ in workers.values()}
    assert _results(scan)["5.7.4"][0] in ("pass", "fail")  # the API checks still ran
    assert scan.errored == len(plane) and scan.state == Scan.State.FAILED
    assert scan.score == pytest.approx(100 * scan.passed / (scan.passed + scan.failed + scan.errored), abs=0.1)
    sections = {s["section"]: s for s in scan.sections}
    assert sections["1.2"]["pass"] == 0 and sections["1.2"]["error"] > 0 and sections["1.2"]["score"] == 0
    raw = {x["role"]: x for x in scan.raw["kube_bench"]}
    assert "unable to detect running programs" in raw["controlplane"]["output"] and raw["controlplane"]["error"]
    assert json.loads(raw["worker"]["output"])["Controls"] and not raw["worker"]["error"]

    # The worker's kube-bench prints its text report, not JSON: section 4 is Error; the control plane's is judged.
    scan = _scan(register(broken_bench_fleet, "bench-text"), "cis-1.8-hardened", run_jobs)
    workers = _node_checks(scan, ("4",))
    assert workers and {result for result, _ in workers.values()} == {"error"}
    assert "kube-bench on bench-text-worker-1" in workers["4.2.1"][1] and "not valid JSON" in workers["4.2.1"][1]
    plane = _node_checks(scan, ("1", "2", "3"))
    assert plane["1.2.16"][0] == "fail" and plane["1.2.2"][0] == "pass"
    assert scan.errored == len(workers)
    assert scan.score == pytest.approx(100 * scan.passed / (scan.passed + scan.failed + scan.errored), abs=0.1)


def test_an_unreachable_cluster_ends_the_scan_in_error(scan_fleet, register, run_jobs):
    cluster = register(scan_fleet, "kube-new")
    scan_fleet.set_online("kube-new", False)
    scan = _scan(cluster, "cis-1.8-permissive", run_jobs)
    assert scan.state == Scan.State.ERROR and "could not be scanned" in scan.reason
    assert Job.objects.get(pk=scan.job_id).status == "failed"


def test_a_benchmark_for_another_distribution_is_refused(scan_fleet, register):
    cluster = register(scan_fleet, "k3s-new")
    with pytest.raises(services.ScanRefused, match="k3s cluster"):
        services.request_scan(cluster, ScanProfile.objects.get(name="rke-cis-1.4-hardened"))
