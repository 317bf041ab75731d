"""Discovery documents (/api, /apis, /apis/G/V) and the type index behind routing.

Built from the resource table for the cluster's current version plus the
CRDs stored in the cluster, and cached until either changes.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from .resources import BUILTIN, GROUP_ORDER, ResourceType, group_version_priority


def _storage_hash(rt: ResourceType, version: str) -> str:
    raw = hashlib.sha256(f"{rt.group}/{version}/{rt.kind}".encode()).digest()[:8]
    return base64.b64encode(raw).decode()


class TypeIndex:
    """Every resource served at one moment, indexed for the router."""

    def __init__(self, minor: int, crd_types: list[ResourceType]) -> None:
        self.minor = minor
        self.by_gvr: dict[tuple[str, str, str], ResourceType] = {}
        self.by_key: dict[str, ResourceType] = {}
        self.by_gk: dict[tuple[str, str], ResourceType] = {}
        self.groups: dict[str, list[str]] = {}  # group -> served versions, preferred first
        self.gv_types: dict[tuple[str, str], list[ResourceType]] = {}
        for rt in BUILTIN + crd_types:
            if not rt.min_minor <= minor <= rt.max_minor:
                continue
            versions = rt.served_versions(minor)
            if not versions:
                continue
            self.by_key[rt.key] = rt
            self.by_gk[(rt.group, rt.kind)] = rt
            for v in versions:
                self.by_gvr[(rt.group, v, rt.plural)] = rt
                self.gv_types.setdefault((rt.group, v), []).append(rt)
                gv = self.groups.setdefault(rt.group, [])
                if v not in gv:
                    gv.append(v)
        for g, vs in self.groups.items():
            vs.sort(key=lambda v, g=g: group_version_priority(g, v))
        self._cache: dict[str, Any] = {}

    def preferred(self, group: str) -> str:
        return self.groups[group][0]

    def storage_version(self, rt: ResourceType) -> str:
        """The version objects are written in (the group's preferred served version)."""
        vs = rt.served_versions(self.minor)
        pref = self.groups.get(rt.group, vs)
        for v in pref:
            if v in vs:
                return v
        return vs[0]

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self.by_gvr.get((group, version, plural))

    def for_api_version(self, api_version: str, kind: str) -> ResourceType | None:
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        return self.by_gk.get((group, kind))

    def eviction_version(self) -> str:
        return "v1" if self.minor >= 22 else "v1beta1"

    def api_versions(self, server_address: str) -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        }

    def _group_doc(self, group: str) -> dict[str, Any]:
        vs = self.groups[group]
        return {
            "name": group,
            "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in vs],
            "preferredVersion": {"groupVersion": f"{group}/{vs[0]}", "version": vs[0]},
        }

    def group_list(self) -> dict[str, Any]:
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        names = sorted((g for g in self.groups if g), key=lambda g: (order.get(g, len(order)), g))
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [self._group_doc(g) for g in names]}

    def group(self, group: str) -> dict[str, Any] | None:
        if group not in self.groups or not group:
            return None
        doc = self._group_doc(group)
        doc.update(kind="APIGroup", apiVersion="v1")
        return doc

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        types = self.gv_types.get((group, version))
        if types is None:
            return None
        out: list[dict[str, Any]] = []
        for rt in types:
            entry: dict[str, Any] = {
                "name": rt.plural,
                "singularName": rt.singular if self.minor >= 18 or rt.custom else "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": list(rt.verbs),
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            if set(rt.verbs) & {"get", "list"}:
                entry["storageVersionHash"] = _storage_hash(rt, version)
            out.append(entry)
            for sub in rt.subresources:
                s: dict[str, Any] = {
                    "name": f"{rt.plural}/{sub.name}",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": sub.kind or rt.kind,
                    "verbs": list(sub.verbs),
                }
                if sub.group is not None:
                    s["group"] = sub.group
                    s["version"] = self.eviction_version() if sub.name == "eviction" else sub.version
                out.append(s)
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}
