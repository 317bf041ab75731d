"""The benchmarks and built-in profiles, read once from the YAML files in ``scans/benchmarks/``.

A benchmark lists its checks: id, title, section, level, scored (automated) or manual, the node
type kube-bench runs it on (``master``, ``etcd``, ``controlplane``, ``node``) or ``policies``,
where the result comes from (``kube-bench``, ``corral`` — evaluated through the Kubernetes API by
:mod:`scans.policy` — or ``manual``), how it is audited, the remediation, and when it does not
apply: ``not_applicable`` per distribution and ``versions`` (``max``/``min`` minor with a reason).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DIR = Path(__file__).resolve().parent / "benchmarks"
DISTRIBUTIONS = ("rke", "k3s", "rke2", "kubernetes")


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    section: str
    level: int
    scored: bool
    node: str
    source: str
    audit: str
    remediation: str
    evaluator: str = ""
    not_applicable: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def not_applicable_reason(self, distribution: str, minor: int | None) -> str:
        """Why this check does not apply to a cluster of this distribution and minor version ("" if it does)."""
        if distribution in self.not_applicable:
            return self.not_applicable[distribution]
        if minor is not None and self.versions:
            low, high = self.versions.get("min"), self.versions.get("max")
            if (high and minor > int(str(high).split(".")[-1])) or (low and minor < int(str(low).split(".")[-1])):
                return self.versions.get("reason", "Not part of this Kubernetes version.")
        return ""


@dataclass(frozen=True)
class Benchmark:
    id: str
    title: str
    kube_bench: str
    image: str
    distributions: tuple[str, ...]
    sections: dict[str, str]
    checks: tuple[Check, ...]

    def check(self, check_id: str) -> Check | None:
        return self._by_id.get(check_id)

    @functools.cached_property
    def _by_id(self) -> dict[str, Check]:
        return {c.id: c for c in self.checks}

    def node_types(self) -> set[str]:
        return {c.node for c in self.checks if c.source == "kube-bench"}


def _check(raw: dict) -> Check:
    return Check(id=str(raw["id"]), title=raw["title"], section=str(raw["section"]), level=int(raw.get("level", 1)),
                 scored=bool(raw.get("scored", True)), node=raw["node"], source=raw["source"],
                 audit=raw.get("audit", ""), remediation=raw.get("remediation", ""),
                 evaluator=raw.get("evaluator", ""), not_applicable=dict(raw.get("not_applicable") or {}),
                 versions={k: str(v) for k, v in (raw.get("versions") or {}).items()})


@functools.cache
def all_benchmarks() -> dict[str, Benchmark]:
    out = {}
    for path in sorted(DIR.glob("*.yaml")):
        if path.name == "profiles.yaml":
            continue
        raw = yaml.safe_load(path.read_text())
        out[raw["id"]] = Benchmark(
            id=raw["id"], title=raw["title"], kube_bench=raw["kube_bench"]["benchmark"],
            image=raw["kube_bench"]["image"], distributions=tuple(raw["distributions"]),
            sections={str(k): v for k, v in raw["sections"].items()},
            checks=tuple(_check(c) for c in raw["checks"]))
    return out


def get(benchmark_id: str) -> Benchmark:
    try:
        return all_benchmarks()[benchmark_id]
    except KeyError:
        raise LookupError(f"No benchmark {benchmark_id!r}; known: {', '.join(sorted(all_benchmarks()))}") from None


@functools.cache
def builtin_profiles() -> list[dict]:
    return yaml.safe_load((DIR / "profiles.yaml").read_text())["profiles"]


def profile_errors(benchmark_id: str, skips) -> dict[str, list[str]]:
    """What is wrong with a profile's benchmark and skip list, by field (empty when it is fine)."""
    try:
        bench = get(benchmark_id)
    except LookupError as exc:
        return {"benchmark": [str(exc)]}
    if not isinstance(skips, dict):
        return {"skips": ['Give the skipped checks as {"check id": "reason"}.']}
    unknown = sorted(str(k) for k in skips if bench.check(str(k)) is None)
    errors = []
    if unknown:
        errors.append(f"{bench.id} has no check {', '.join(unknown)}.")
    missing = sorted(str(k) for k, v in skips.items() if not isinstance(v, str) or not v.strip())
    if missing:
        errors.append(f"Say why each check is skipped: no reason for {', '.join(missing)}.")
    return {"skips": errors} if errors else {}


def distribution_of(kind: str, version: str) -> str:
    """rke, k3s, rke2 or kubernetes, from a cluster's kind and version string."""
    if kind == "k3s" or "+k3s" in version:
        return "k3s"
    if "+rke2" in version:
        return "rke2"
    return "rke" if kind == "rke" else "kubernetes"


def minor_of(version: str) -> int | None:
    try:
        return int(version.lstrip("v").split(".")[1])
    except (IndexError, ValueError):
        return None


def benchmarks_for(distribution: str) -> list[Benchmark]:
    return [b for b in all_benchmarks().values() if distribution in b.distributions]
