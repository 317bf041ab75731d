"""Running a scan: kube-bench on the nodes, Corral's own policy checks, and one result per check.

The result of a check, in this order:
1. Skipped — the profile skips it (with the profile's reason);
2. N/A — it does not apply to the cluster's distribution or Kubernetes version (with the reason);
3. from kube-bench (node checks): PASS/FAIL/WARN/INFO as Pass/Fail/Warn/N/A; a check kube-bench did not
   report, a Job that failed or output that cannot be read is an Error, never a Pass;
4. from Corral (policy checks): Pass or Fail with the evidence; a cluster that cannot answer is an Error;
5. manual checks the benchmark leaves to people: Warn.
Totals and a score (pass / (pass + fail + error)) per section and for the whole scan.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

from django.db import transaction
from django.utils import timezone

from clusters import kube
from clusters.nodeops.api import ClusterApi
from portal.jobs import NullReporter
from scans import benchmarks, kubebench, policy
from scans.models import CheckResult, Scan

WORST = {"fail": 5, "error": 4, "warn": 3, "pass": 2, "na": 1}
KEYS = ("pass", "fail", "warn", "na", "skip", "error")


def score(counts: dict[str, int]) -> float | None:
    judged = counts.get("pass", 0) + counts.get("fail", 0) + counts.get("error", 0)
    return round(100.0 * counts.get("pass", 0) / judged, 1) if judged else None


def _kube_bench_result(check: benchmarks.Check, runs: list[kubebench.NodeRun]) -> tuple[str, str, dict]:
    relevant = [r for r in runs if check.node in r.targets]
    if not relevant:
        return "error", f"No node of the cluster runs kube-bench's {check.node} checks (no Ready node with that role).", {}
    found, problems = [], []
    for run in relevant:
        if run.error:
            problems.append(run.error)
        elif check.id in run.results:
            found.append((run, run.results[check.id]))
        else:
            problems.append(f"kube-bench on {run.node} did not report {check.id}")
    evidence = {"nodes": {run.node: res for run, res in found}}
    if problems:
        evidence["problems"] = problems
    if not found or (problems and all(WORST[res["status"]] <= WORST["pass"] for _, res in found)):
        return "error", "; ".join(problems) or "kube-bench reported nothing", evidence
    run, res = max(found, key=lambda item: WORST[item[1]["status"]])
    status = res["status"]
    if status == "na":
        reason = f"kube-bench on {run.node} reported it as informational: {res.get('reason') or 'no reason given'}"
    elif status == "warn":
        reason = f"kube-bench on {run.node}: review by hand ({res.get('reason') or 'not scored'})"
        if res.get("actual_value"):
            reason += f"; found {res['actual_value']!r}"
    elif status == "fail":
        reason = f"kube-bench on {run.node} found {res.get('actual_value') or 'nothing'!r}, expected {res.get('expected_result') or 'the benchmark value'}"
    else:
        reason = f"kube-bench on {run.node}: {res.get('actual_value') or 'as expected'}"
    return status, reason, evidence


def evaluate(scan: Scan, reporter=None) -> None:
    """Run the scan's checks against its cluster and store the results (the body of the scan job)."""
    reporter = reporter or NullReporter()
    cluster = scan.cluster
    bench = benchmarks.get(scan.benchmark)
    skips = dict((scan.profile.skips if scan.profile else {}) or {})
    api = ClusterApi(cluster.kubeconfig, insecure_tls=cluster.insecure_tls)
    started = time.monotonic()
    try:
        version = api.version()
        distribution = benchmarks.distribution_of(cluster.kind, version)
        minor = benchmarks.minor_of(version)
        Scan.objects.filter(pk=scan.pk).update(kubernetes_version=version, distribution=distribution)
        scan.kubernetes_version, scan.distribution = version, distribution
        reporter.progress(10, f"{bench.id} on {distribution} {version}")

        def applies(check: benchmarks.Check) -> bool:
            return check.id not in skips and not check.not_applicable_reason(distribution, minor)

        node_types = {c.node for c in bench.checks if c.source == "kube-bench" and applies(c)}
        runs: list[kubebench.NodeRun] = []
        if node_types:
            reporter.progress(15, f"kube-bench on the nodes ({', '.join(sorted(node_types))})")
            runs = kubebench.run_on_cluster(api, scan_id=scan.pk, benchmark=bench.kube_bench, image=bench.image,
                                            node_types=node_types, distribution=distribution, reporter=reporter)
        reporter.progress(70, "policy checks through the Kubernetes API")
        snapshot = policy.Snapshot(api, minor)
        rows = []
        for position, check in enumerate(bench.checks):
            evidence: dict[str, Any] = {}
            na = check.not_applicable_reason(distribution, minor)
            if check.id in skips:
                result, reason = "skip", str(skips[check.id])
            elif na:
                result, reason = "na", na
            elif check.source == "kube-bench":
                result, reason, evidence = _kube_bench_result(check, runs)
            elif check.source == "corral":
                try:
                    outcome = policy.evaluate(check.evaluator, snapshot)
                    result, reason, evidence = outcome.result, outcome.reason, outcome.evidence
                except policy.EvaluationError as exc:
                    result, reason = "error", str(exc)
                except Exception as exc:  # noqa: BLE001 - a broken evaluator is an Error of that check only
                    result, reason = "error", f"the check could not be evaluated: {type(exc).__name__}: {exc}"
                if result == "fail" and not check.scored:
                    evidence["benchmark_says"] = "manual"
            else:
                result, reason = "warn", "Manual: the benchmark leaves this to people; review it by hand."
            rows.append(CheckResult(scan=scan, position=position, check_id=check.id, section=check.section,
                                    title=check.title, level=check.level, scored=check.scored, node_type=check.node,
                                    source=check.source, result=result, reason=reason[:4000],
                                    remediation=check.remediation if result in ("fail", "warn", "error") else "",
                                    evidence=evidence))
        _store(scan, bench, rows, runs, round(time.monotonic() - started, 3))
        counts = scan.counts
        reporter.log(f"{counts['total']} checks: {counts['pass']} pass, {counts['fail']} fail, {counts['warn']} warn, "
                     f"{counts['na']} N/A, {counts['skip']} skipped, {counts['error']} error; score {scan.score}")
    finally:
        api.close()


@transaction.atomic
def _store(scan: Scan, bench: benchmarks.Benchmark, rows: list[CheckResult], runs, seconds: float) -> None:
    CheckResult.objects.filter(scan=scan).delete()
    CheckResult.objects.bulk_create(rows)
    counts = Counter(r.result for r in rows)
    sections = []
    for section in dict.fromkeys(r.section for r in rows):
        c = Counter(r.result for r in rows if r.section == section)
        sections.append({"section": section, "title": bench.sections.get(section, ""),
                         **{k: c.get(k, 0) for k in KEYS}, "total": sum(c.values()), "score": score(c)})
    scan.total = len(rows)
    scan.passed, scan.failed, scan.warned = counts["pass"], counts["fail"], counts["warn"]
    scan.not_applicable, scan.skipped, scan.errored = counts["na"], counts["skip"], counts["error"]
    scan.score = score(counts)
    scan.sections = sections
    scan.raw = {"seconds": seconds, "kube_bench": [
        {"role": r.role, "node": r.node, "targets": r.targets, "job": r.job, "error": r.error, "output": r.raw}
        for r in runs]}
    scan.state = Scan.State.FAILED if scan.failed else (Scan.State.ERROR if scan.errored else Scan.State.PASSED)
    scan.reason = (f"{scan.failed} check(s) failed" if scan.failed else
                   f"{scan.errored} check(s) could not be evaluated" if scan.errored else "every judged check passed")
    scan.finished_at = timezone.now()
    scan.save()


def fail(scan: Scan, reason: str) -> None:
    """The scan could not run at all (unreachable cluster): it ends in Error with the reason."""
    Scan.objects.filter(pk=scan.pk).update(state=Scan.State.ERROR, reason=reason[:4000], finished_at=timezone.now())


def explain(exc: BaseException, cluster) -> str:
    return kube.explain(exc).reason if not isinstance(exc, kube.ClusterError) else exc.reason
