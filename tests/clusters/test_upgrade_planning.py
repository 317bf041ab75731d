"""Batch planning: etcd one at a time, control plane and workers by count or percentage (at least 1)."""
from __future__ import annotations

import pytest

from clusters.upgrades.k3s import AGENT_PLAN, SERVER_PLAN, drain_spec, plan_objects
from clusters.upgrades.planning import batch_size, plan_k3s, plan_rke


@pytest.mark.parametrize("limit,count,expected", [
    ("1", 3, 1), ("2", 3, 2), ("5", 3, 3), (2, 10, 2),
    ("10%", 3, 1),      # 0.3 rounds down to 0, and a batch is never empty
    ("10%", 94, 9),     # 9.4 rounds down
    ("10%", 100, 10), ("25%", 10, 2), ("50%", 3, 1), ("100%", 7, 7), ("1%", 50, 1), ("34%", 3, 1),
])
def test_batch_size_counts_and_percentages(limit, count, expected):
    assert batch_size(limit, count) == expected


def _node(name, *roles, cordoned=False, version="v1.15.11", k3s=False):
    labels = {"kubernetes.io/hostname": name}
    if k3s:
        if "server" in roles:
            labels["node-role.kubernetes.io/master"] = "true"
    else:
        labels.update({f"node-role.kubernetes.io/{r}": "true" for r in roles})
    return {"metadata": {"name": name, "labels": labels}, "spec": {"unschedulable": True} if cordoned else {},
            "status": {"nodeInfo": {"kubeletVersion": version}}}


def _batches(planned):
    out: dict[int, list[str]] = {}
    for p in planned:
        out.setdefault(p.batch, []).append(p.name)
    return [out[b] for b in sorted(out)]


def test_rke_plan_orders_roles_and_splits_batches():
    nodes = [_node(f"etcd-{i}", "etcd") for i in (1, 2, 3)] + [_node(f"cp-{i}", "controlplane") for i in (1, 2, 3)]
    nodes += [_node(f"w-{i:02}", "worker") for i in range(1, 21)]
    planned = plan_rke(nodes, {"max_unavailable_controlplane": "2", "max_unavailable_worker": "25%"}, "rolling")
    batches = _batches(planned)
    assert batches[:3] == [["etcd-1"], ["etcd-2"], ["etcd-3"]]
    assert batches[3:5] == [["cp-1", "cp-2"], ["cp-3"]]
    assert [len(b) for b in batches[5:]] == [5, 5, 5, 5]
    assert {p.role for p in planned if p.name.startswith("w-")} == {"worker"}


def test_rke_plan_upgrades_a_node_with_several_roles_once_in_its_first_role():
    nodes = [_node("a", "etcd", "controlplane", "worker"), _node("b", "controlplane", "worker"), _node("c", "worker")]
    planned = {p.name: p for p in plan_rke(nodes, {}, "rolling")}
    assert (planned["a"].role, planned["b"].role, planned["c"].role) == ("etcd", "controlplane", "worker")
    assert planned["a"].batch < planned["b"].batch < planned["c"].batch


def test_parallel_plan_takes_every_node_of_a_role_at_once_and_notes_cordoned_nodes():
    nodes = [_node(f"etcd-{i}", "etcd") for i in (1, 2, 3)] + [_node(f"w-{i}", "worker", cordoned=i == 2) for i in (1, 2, 3)]
    planned = plan_rke(nodes, {"max_unavailable_worker": "1"}, "parallel")
    assert _batches(planned) == [["etcd-1", "etcd-2", "etcd-3"], ["w-1", "w-2", "w-3"]]
    assert [p.name for p in planned if p.cordoned_before] == ["w-2"]


def test_k3s_plan_puts_servers_first():
    planned = plan_k3s([_node("agent-1", "agent", k3s=True), _node("server-1", "server", k3s=True)])
    assert [(p.name, p.role, p.batch) for p in planned] == [("server-1", "server", 0), ("agent-1", "agent", 1)]


def test_k3s_plans_carry_version_concurrency_cordon_and_drain():
    strategy = {"k3s": {"server_concurrency": 1, "worker_concurrency": 3, "drain_server_nodes": False,
                        "drain_worker_nodes": True},
                "node_drain_input": {"force": True, "ignore_daemonsets": True, "delete_local_data": False,
                                     "grace_period": 30, "timeout": 120}}
    server, agent = plan_objects("v1.17.5+k3s1", strategy, "rolling", {"server": 1, "agent": 4})
    assert server["apiVersion"] == "upgrade.cattle.io/v1" and server["kind"] == "Plan"
    assert (server["metadata"]["name"], agent["metadata"]["name"]) == (SERVER_PLAN, AGENT_PLAN)
    assert server["spec"]["version"] == agent["spec"]["version"] == "v1.17.5+k3s1"
    assert (server["spec"]["concurrency"], agent["spec"]["concurrency"]) == (1, 3)
    assert server["spec"]["cordon"] is True and "drain" not in server["spec"]
    assert agent["spec"]["drain"] == {"force": True, "ignoreDaemonSets": True, "deleteLocalData": False,
                                      "gracePeriod": 30, "timeout": 120_000_000_000}
    assert agent["spec"]["prepare"]["args"] == ["prepare", SERVER_PLAN]
    assert server["spec"]["nodeSelector"]["matchExpressions"] == [
        {"key": "node-role.kubernetes.io/master", "operator": "In", "values": ["true"]}]
    assert agent["spec"]["nodeSelector"]["matchExpressions"][0]["operator"] == "DoesNotExist"
    assert server["spec"]["serviceAccountName"] == "system-upgrade"

    server, agent = plan_objects("v1.17.5+k3s1", strategy, "parallel", {"server": 1, "agent": 4})
    assert (server["spec"]["concurrency"], agent["spec"]["concurrency"]) == (1, 4)
    assert not any(k in spec for spec in (server["spec"], agent["spec"]) for k in ("drain", "cordon"))


def test_drain_spec_leaves_grace_period_to_the_pod_when_negative():
    assert "gracePeriod" not in drain_spec({"grace_period": -1, "timeout": 60})
