"""kube-bench's JSON in both shapes it has printed, mapped to Corral's results."""
from __future__ import annotations

import json

import pytest

from scans import kubebench

RESULTS = [
    {"test_number": "1.2.16", "test_desc": "Ensure that the --profiling argument is set to false (Automated)",
     "audit": "/bin/ps -ef | grep kube-apiserver", "AuditConfig": "", "type": "", "remediation": "...",
     "test_info": ["..."], "status": "FAIL", "actual_value": "--secure-port=6443", "scored": True,
     "expected_result": "'--profiling' is equal to 'false'", "reason": ""},
    {"test_number": "1.2.2", "test_desc": "Ensure that the --token-auth-file parameter is not set", "status": "PASS",
     "scored": True},
    {"test_number": "1.2.21", "test_desc": "request-timeout (Manual)", "type": "manual", "status": "WARN", "scored": False},
    {"test_number": "1.1.1", "test_desc": "pod spec file", "type": "skip", "status": "INFO", "reason": "Test marked as skip"},
]
CONTROLS = [{"id": "1", "version": "cis-1.8", "text": "Control Plane Security Configuration", "node_type": "master",
             "tests": [{"section": "1.2", "desc": "API Server", "pass": 1, "fail": 1, "warn": 1, "info": 1,
                        "results": RESULTS}],
             "total_pass": 1, "total_fail": 1, "total_warn": 1, "total_info": 1}]


@pytest.mark.parametrize("text", [
    json.dumps({"Controls": CONTROLS, "Totals": {"total_pass": 1, "total_fail": 1, "total_warn": 1, "total_info": 1}}),
    json.dumps(CONTROLS),  # older kube-bench, or --nototals
    "I1128 11:00:00 some log line on stderr\n" + json.dumps(CONTROLS),
], ids=["document", "bare-array", "after-a-log-line"])
def test_both_shapes_are_read_and_mapped(text):
    results = kubebench.results_by_check(kubebench.parse_output(text))
    assert {k: v["status"] for k, v in results.items()} == {"1.2.16": "fail", "1.2.2": "pass", "1.2.21": "warn",
                                                            "1.1.1": "na"}
    assert results["1.2.16"]["actual_value"] == "--secure-port=6443"
    assert results["1.2.16"]["expected_result"].startswith("'--profiling'")
    assert results["1.2.16"]["node_type"] == "master"


@pytest.mark.parametrize("text,message", [
    ("", "printed nothing"),
    ("error validating targets: unknown benchmark", "no JSON"),
    ('{"Controls": [', "not valid JSON"),
    ('{"Totals": {}}', 'no "Controls"'),
    ('[1, 2]', "not a list of objects"),
])
def test_what_is_not_kube_bench_output_is_refused(text, message):
    with pytest.raises(kubebench.IngestError, match=message):
        kubebench.parse_output(text)


def test_an_unknown_status_is_an_error():
    controls = [{"node_type": "node", "tests": [{"results": [{"test_number": "4.2.1", "status": "SKIPPED?"}]}]}]
    assert kubebench.results_by_check(controls)["4.2.1"]["status"] == "error"


def test_the_simulator_prints_both_shapes(scan_fleet):
    from kubesim.controllers import kubebench as sim

    cluster = scan_fleet.clusters["kube-new"]
    node = cluster.nodes["kube-new-controlplane-1"]
    code, doc = sim.run_kube_bench(cluster, node, ["kube-bench", "run", "--targets", "master", "--benchmark", "cis-1.8", "--json"])
    code2, bare = sim.run_kube_bench(cluster, node, ["kube-bench", "run", "--targets=master", "--benchmark=cis-1.8",
                                                     "--json", "--nototals"])
    assert code == code2 == 0
    assert "Totals" in json.loads(doc) and isinstance(json.loads(bare), list)
    assert kubebench.results_by_check(kubebench.parse_output(doc)) == kubebench.results_by_check(kubebench.parse_output(bare))
    code, out = sim.run_kube_bench(cluster, node, ["kube-bench", "run", "--benchmark", "cis-9.9", "--json"])
    assert code == 1 and "unknown benchmark" in out
