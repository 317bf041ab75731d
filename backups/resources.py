"""Resource backups for imported clusters, whose etcd Corral cannot reach: every object through the API.

A backup is one gzip-compressed JSON document (see ``dump``): a manifest, the resources it holds
(group, version, kind, scope, whether status is a subresource) and every object, Secrets included,
with what the server fills in removed so it can be created again. The archive holds Secrets in the
clear (base64 as the API serves them): whoever stores it must encrypt it.

Pure service code: no Django models, no jobs. Everything goes through ``ClusterApi.request`` (the
official client's transport), so failures are ``kube.ClusterError`` with a reason in words, and the
request counter sees every call.
"""
from __future__ import annotations

import copy
import datetime as dt
import gzip
import hashlib
import io
import json
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clusters import kube

if TYPE_CHECKING:
    from clusters.nodeops.api import ClusterApi

FORMAT = "corral.resource-backup/v1"
MAX_DOCUMENT_BYTES = 2 * 1024**3  # uncompressed: a bigger archive is refused rather than read into memory
PAGE = 500  # objects per list request
WAIT_TIMEOUT = 60.0  # seconds to wait for a CRD to be served or a terminating namespace to go

Ref = tuple[str, str, str]  # (resource, namespace, name); resource is plural or plural.group
Progress = Callable[[int, str], None]  # (percent, message), as portal.jobs' context.progress

# Left out of backups unless include_kinds names them, never pruned, ignored by diff: what the
# cluster keeps regenerating, holds about machines rather than workloads, or cannot store at all.
VOLATILE: frozenset[str] = frozenset({
    "events", "events.events.k8s.io",  # a log of what happened, not state; expires after an hour
    "leases.coordination.k8s.io",  # heartbeats and leader election, renewed every few seconds
    "endpoints", "endpointslices.discovery.k8s.io",  # derived from Services and ready pods
    "nodes", "csinodes.storage.k8s.io",  # machines register themselves; a restore must not invent them
    "volumeattachments.storage.k8s.io",  # attach state of the machines of the moment
    "componentstatuses",  # a read-only probe of the control plane
    "bindings",  # a verb on pods, never listed
    "tokenreviews.authentication.k8s.io", "selfsubjectreviews.authentication.k8s.io",  # *reviews: questions,
    "subjectaccessreviews.authorization.k8s.io", "selfsubjectaccessreviews.authorization.k8s.io",  # not state
    "localsubjectaccessreviews.authorization.k8s.io", "selfsubjectrulesreviews.authorization.k8s.io",
    "pods.metrics.k8s.io", "nodes.metrics.k8s.io",  # metrics-server's live measurements
})

# Objects of these resources that have a controller owner are left out (whatever the filters): the
# owner brings them back, and a copy with the old owner's uid would be collected as an orphan or
# fight the controller for its name.
OWNED_BY_CONTROLLER: frozenset[str] = frozenset({
    "pods", "replicasets.apps", "controllerrevisions.apps", "jobs.batch",
})

# The same objects served under an old group: backed up once, under the group that replaced it.
ALIASES: dict[str, str] = {
    "deployments.extensions": "deployments.apps", "daemonsets.extensions": "daemonsets.apps",
    "replicasets.extensions": "replicasets.apps", "networkpolicies.extensions": "networkpolicies.networking.k8s.io",
    "ingresses.extensions": "ingresses.networking.k8s.io", "podsecuritypolicies.extensions": "podsecuritypolicies.policy",
    "events.events.k8s.io": "events",
}

PROTECTED_NAMESPACES: frozenset[str] = frozenset({"kube-system", "kube-public", "kube-node-lease", "default"})

CRDS = "customresourcedefinitions.apiextensions.k8s.io"
RBAC = ("clusterroles.rbac.authorization.k8s.io", "clusterrolebindings.rbac.authorization.k8s.io",
        "roles.rbac.authorization.k8s.io", "rolebindings.rbac.authorization.k8s.io")
# Restore order: each phase completes before the next; anything not named falls in "the rest".
PHASES: tuple[tuple[str, ...], ...] = (
    ("namespaces",),
    (CRDS,),
    ("serviceaccounts", "secrets", "configmaps"),
    RBAC,
    ("limitranges", "resourcequotas", "priorityclasses.scheduling.k8s.io", "storageclasses.storage.k8s.io",
     "persistentvolumes", "persistentvolumeclaims", "services"),
)
# Applied after everything else: a webhook or API service whose backend is not running yet would
# make the API server refuse (or time out on) every other object of the restore.
LAST = ("apiservices.apiregistration.k8s.io", "mutatingwebhookconfigurations.admissionregistration.k8s.io",
        "validatingwebhookconfigurations.admissionregistration.k8s.io")

SA_TOKEN = "kubernetes.io/service-account-token"
SA_NAME = "kubernetes.io/service-account.name"
SA_UID = "kubernetes.io/service-account.uid"
MIRROR_POD = "kubernetes.io/config.mirror"
SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
                   "deletionTimestamp", "deletionGracePeriodSeconds")


class BackupError(Exception):
    """A backup cannot be taken, trusted or restored; ``reason`` says why in words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RestoreInterrupted(BackupError):
    """The cluster stopped answering during a restore; ``report`` (as ``restore`` returns it) holds what
    was done until then."""

    def __init__(self, reason: str, report: dict[str, Any]):
        super().__init__(reason)
        self.report = report


# ---------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class Resource:
    """One listable REST resource as discovery shows it (the version is the group's preferred serving it)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = ()
    status: bool = False  # status is a subresource: the server owns it, a restore cannot write it
    versions: tuple[str, ...] = ()  # every served version, preferred first

    @property
    def key(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def names(self) -> set[str]:
        return {self.plural, self.key, self.kind.lower()}

    def path(self, namespace: str = "", name: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base

    def at(self, version: str) -> Resource:
        return Resource(self.group, version, self.plural, self.kind, self.namespaced, self.verbs, self.status,
                        self.versions)

    def as_dict(self) -> dict[str, Any]:
        return {"group": self.group, "version": self.version, "plural": self.plural, "kind": self.kind,
                "namespaced": self.namespaced, "status": self.status}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Resource:
        return cls(data["group"], data["version"], data["plural"], data["kind"], bool(data["namespaced"]),
                   status=bool(data.get("status")), versions=(data["version"],))


@dataclass
class Discovery:
    resources: dict[str, Resource]  # key -> resource
    unreadable: list[dict[str, str]] = field(default_factory=list)  # group versions that did not answer

    def by_kind(self, group: str, kind: str) -> Resource | None:
        for res in self.resources.values():
            if res.group == group and res.kind == kind:
                return res
        return None


def discover(api: ClusterApi) -> Discovery:
    """Every resource the cluster lists and gets, at its group's preferred version where that serves it.

    Other versions are read too: a resource may be served only by a version that is not the preferred
    one (PodSecurityPolicy in policy/v1beta1 on 1.21-1.24, when policy/v1 is preferred).
    """
    group_versions: list[tuple[str, str]] = [("", v) for v in (api.request("GET", "/api").get("versions") or ["v1"])]
    for group in api.request("GET", "/apis").get("groups") or []:
        preferred = (group.get("preferredVersion") or {}).get("version")
        versions = [v["version"] for v in group.get("versions") or []]
        versions.sort(key=lambda v: v != preferred)
        group_versions += [(group["name"], v) for v in versions]
    found: dict[str, dict[str, Any]] = {}
    unreadable: list[dict[str, str]] = []
    for group, version in group_versions:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            listing = api.request("GET", path).get("resources") or []
        except kube.ClusterError as exc:  # an aggregated API whose backend is down (metrics-server)
            unreadable.append({"groupVersion": path.split("/", 2)[2], "reason": exc.reason})
            continue
        subresources = {r["name"] for r in listing if "/" in r.get("name", "")}
        for r in listing:
            name = r.get("name", "")
            if "/" in name or not {"list", "get"} <= set(r.get("verbs") or ()):
                continue
            key = f"{name}.{group}" if group else name
            entry = found.get(key)
            if entry is None:
                found[key] = {"group": group, "version": version, "plural": name, "kind": r.get("kind", ""),
                              "namespaced": bool(r.get("namespaced")), "verbs": tuple(r.get("verbs") or ()),
                              "status": f"{name}/status" in subresources, "versions": [version]}
            elif version not in entry["versions"]:
                entry["versions"].append(version)
    resources = {k: Resource(**{**v, "versions": tuple(v["versions"])}) for k, v in found.items()}
    return Discovery(resources, unreadable)


def _discover(api: ClusterApi) -> Discovery:
    try:
        return discover(api)
    except kube.ClusterError as exc:
        raise BackupError(f"Cannot read the cluster's API (discovery): {exc.reason}") from None


# ---------------------------------------------------------------------- what is in a backup
@dataclass(frozen=True)
class Filters:
    include_namespaces: tuple[str, ...] = ()
    exclude_namespaces: tuple[str, ...] = ()
    include_kinds: tuple[str, ...] = ()
    exclude_kinds: tuple[str, ...] = ()

    @classmethod
    def of(cls, include_namespaces: Iterable[str] = (), exclude_namespaces: Iterable[str] = (),
           include_kinds: Iterable[str] = (), exclude_kinds: Iterable[str] = ()) -> Filters:
        for value in (include_namespaces, exclude_namespaces, include_kinds, exclude_kinds):
            if isinstance(value, str):
                raise TypeError("filters are lists of names, not one text")
        return cls(tuple(sorted(set(include_namespaces))), tuple(sorted(set(exclude_namespaces))),
                   tuple(sorted(set(include_kinds))), tuple(sorted(set(exclude_kinds))))

    def as_dict(self) -> dict[str, list[str]]:
        return {k: list(getattr(self, k)) for k in
                ("include_namespaces", "exclude_namespaces", "include_kinds", "exclude_kinds")}

    @staticmethod
    def _matches(res: Resource, patterns: Sequence[str]) -> bool:
        names = res.names()
        return any(p.lower() in names for p in patterns)

    def named(self, res: Resource) -> bool:
        return self._matches(res, self.include_kinds)

    def takes_resource(self, res: Resource, served: set[str]) -> bool:
        explicit = self.named(res)
        if self.include_kinds and not explicit:
            return False
        if self._matches(res, self.exclude_kinds):
            return False
        if res.key in VOLATILE and not explicit:
            return False
        if ALIASES.get(res.key) in served:
            return False
        if "create" not in res.verbs:  # a backup holds what a restore can create again
            return False
        # A namespace filter scopes the backup to those namespaces: cluster-scoped objects come only
        # when named (CRDs the backed-up custom objects need are added in _select).
        return not (self.include_namespaces and not res.namespaced and res.key != "namespaces" and not explicit)

    def takes_namespace(self, namespace: str) -> bool:
        if self.include_namespaces and namespace not in self.include_namespaces:
            return False
        return namespace not in self.exclude_namespaces


def _wanted(res: Resource, obj: dict[str, Any], filters: Filters) -> bool:
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False  # on its way out
    if res.key == "namespaces":
        return filters.takes_namespace(meta.get("name", ""))
    if res.namespaced and not filters.takes_namespace(meta.get("namespace", "")):
        return False
    if res.key in OWNED_BY_CONTROLLER and any(r.get("controller") for r in meta.get("ownerReferences") or []):
        return False
    return not (res.key == "pods" and MIRROR_POD in (meta.get("annotations") or {}))  # the kubelet's own


def _list(api: ClusterApi, res: Resource, namespace: str = "") -> list[dict[str, Any]]:
    """All objects of a resource, page by page (a list restarts once if its continue token expired)."""
    for attempt in range(3):
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": PAGE}
        try:
            while True:
                page = api.request("GET", res.path(namespace), query=query)
                for item in page.get("items") or []:
                    item.setdefault("apiVersion", page.get("apiVersion") or res.api_version)
                    item.setdefault("kind", res.kind)
                    items.append(item)
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    return items
                query = {"limit": PAGE, "continue": token}
        except kube.ClusterError as exc:
            if exc.status == 404:
                return []  # the resource went away (its CRD was deleted) since discovery
            if exc.status == 410 and attempt < 2:
                continue
            raise BackupError(f"Cannot list {res.key}{f' in {namespace}' if namespace else ''}: {exc.reason}") from None
    return []


def _select(api: ClusterApi, found: Discovery, filters: Filters,
            progress: Progress | None = None) -> list[tuple[Resource, dict[str, Any]]]:
    """The objects a backup with these filters holds, as (resource, raw object)."""
    served = set(found.resources)
    chosen = [r for k, r in sorted(found.resources.items()) if filters.takes_resource(r, served)]
    out: list[tuple[Resource, dict[str, Any]]] = []
    for i, res in enumerate(chosen):
        if res.namespaced and filters.include_namespaces:
            objects = [o for ns in filters.include_namespaces for o in _list(api, res, ns)]
        else:
            objects = _list(api, res)
        kept = [o for o in objects if _wanted(res, o, filters)]
        out += [(res, o) for o in kept]
        if progress:
            progress(5 + 85 * (i + 1) // len(chosen), f"listed {res.key}: {len(kept)}")
    # Custom objects cannot come back without their definition: take the CRD along unless excluded.
    crds = found.resources.get(CRDS)
    if crds and not filters._matches(crds, filters.exclude_kinds):
        have = {o["metadata"]["name"] for r, o in out if r.key == CRDS}
        need = sorted({r.key for r, _ in out if r.group and r.key not in have} - have)
        if need:
            by_name = {o["metadata"]["name"]: o for o in _list(api, crds)}
            out += [(crds, by_name[n]) for n in need if n in by_name]
    return out


def _ref(res: Resource, obj: dict[str, Any]) -> Ref:
    meta = obj.get("metadata") or {}
    return (res.key, meta.get("namespace", "") if res.namespaced else "", meta.get("name", ""))


def inventory(api: ClusterApi, *, include_namespaces: Iterable[str] = (), exclude_namespaces: Iterable[str] = (),
              include_kinds: Iterable[str] = (), exclude_kinds: Iterable[str] = ()) -> list[Ref]:
    """What a backup with these filters would hold right now, as sorted [resource, namespace, name].

    The same rules as ``dump`` (volatile kinds, controller-owned objects, CRDs taken along), so a
    restore's report can compare the two without noise.
    """
    filters = Filters.of(include_namespaces, exclude_namespaces, include_kinds, exclude_kinds)
    return sorted({_ref(r, o) for r, o in _select(api, _discover(api), filters)})


def diff(expected_inventory: Iterable[Sequence[str]], actual_inventory: Iterable[Sequence[str]], *,
         ignore: Iterable[str] = VOLATILE) -> dict[str, list[Ref]]:
    """What the backup holds that the cluster lacks (missing) and the other way round (extra).

    ``ignore`` names resources (plural or plural.group) whose objects come and go on their own.
    """
    skip = set(ignore)
    expected: set[Ref] = {(r[0], r[1], r[2]) for r in expected_inventory if r[0] not in skip}
    actual: set[Ref] = {(r[0], r[1], r[2]) for r in actual_inventory if r[0] not in skip}
    return {"missing": sorted(expected - actual), "extra": sorted(actual - expected)}


# ---------------------------------------------------------------------- cleaning objects
def clean(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """The object as a create request would send it: what the server fills in or allocates removed."""
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    for key in SERVER_METADATA:
        meta.pop(key, None)
    if not res.namespaced:
        meta.pop("namespace", None)
    if not meta.get("annotations"):
        meta.pop("annotations", None)
    if res.status:
        out.pop("status", None)
    spec = out.get("spec")
    if not isinstance(spec, dict):
        return out
    if res.key == "services" and spec.get("clusterIP") != "None":
        spec.pop("clusterIP", None)  # allocated: the old address may belong to another Service by now
        spec.pop("clusterIPs", None)
    elif res.key == "pods":
        spec.pop("nodeName", None)  # the scheduler places it again; the old node may be gone
    elif res.key == "persistentvolumes" and isinstance(spec.get("claimRef"), dict):
        spec["claimRef"].pop("uid", None)  # binds again to the re-created claim by name
        spec["claimRef"].pop("resourceVersion", None)
    return out


# Fields the server allocated that a replace must send back unchanged (they are immutable).
def _carry_over(res: Resource, live: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    spec, live_spec = body.get("spec"), live.get("spec") or {}
    if isinstance(spec, dict):
        keys = {"services": ("clusterIP", "clusterIPs"), "pods": ("nodeName",)}.get(res.key, ())
        for key in keys:
            if key not in spec and key in live_spec:
                spec[key] = live_spec[key]
    body.setdefault("metadata", {})["resourceVersion"] = live["metadata"].get("resourceVersion")
    return body


# ---------------------------------------------------------------------- the archive
def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _content_sha256(resources: dict[str, Any], objects: list[dict[str, Any]]) -> str:
    return hashlib.sha256(_canonical({"resources": resources, "objects": objects})).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cluster_identity(api: ClusterApi) -> str:
    """The kube-system namespace's uid: it stays while the cluster lives, whatever its name in Corral."""
    try:
        uid = api.request("GET", "/api/v1/namespaces/kube-system").get("metadata", {}).get("uid", "")
    except kube.ClusterError as exc:
        raise BackupError(f"Cannot tell which cluster this is (reading namespace kube-system): {exc.reason}") from None
    if not uid:
        raise BackupError("Cannot tell which cluster this is: namespace kube-system has no uid.")
    return uid


def dump(api: ClusterApi, *, cluster_name: str = "", include_namespaces: Iterable[str] = (),
         exclude_namespaces: Iterable[str] = (), include_kinds: Iterable[str] = (),
         exclude_kinds: Iterable[str] = (), progress: Progress | None = None) -> tuple[bytes, dict[str, Any]]:
    """Back up the cluster's objects: (archive, manifest), the manifest with the archive's size and SHA-256.

    The archive is gzip of one JSON document ``{"manifest", "resources", "objects"}``; its manifest
    carries ``content_sha256`` over resources and objects, so an archive checks itself even without
    the stored manifest; the stored manifest adds ``size`` and ``sha256`` of the archive bytes.
    """
    filters = Filters.of(include_namespaces, exclude_namespaces, include_kinds, exclude_kinds)
    if progress:
        progress(0, "reading the cluster's identity and API")
    cluster = cluster_identity(api)
    try:
        version = api.request("GET", "/version").get("gitVersion", "")
    except kube.ClusterError as exc:
        raise BackupError(f"Cannot read the cluster's version: {exc.reason}") from None
    found = _discover(api)
    selected = _select(api, found, filters, progress)
    objects = sorted(({"resource": r.key, "object": clean(r, o)} for r, o in selected),
                     key=lambda e: _ref(found.resources[e["resource"]], e["object"]))
    resources = {key: found.resources[key].as_dict() for key in sorted({e["resource"] for e in objects})}
    counts: dict[str, int] = {}
    for entry in objects:
        counts[entry["resource"]] = counts.get(entry["resource"], 0) + 1
    manifest = {
        "format": FORMAT, "cluster": cluster, "cluster_name": cluster_name, "kubernetes_version": version,
        "created": _now(), "filters": filters.as_dict(), "counts": counts, "objects": len(objects),
        "inventory": [list(_ref(found.resources[e["resource"]], e["object"])) for e in objects],
        "unreadable": found.unreadable, "content_sha256": _content_sha256(resources, objects),
    }
    if progress:
        progress(95, f"compressing {len(objects)} objects")
    archive = gzip.compress(_canonical({"manifest": manifest, "resources": resources, "objects": objects}), mtime=0)
    manifest = {**manifest, "size": len(archive), "sha256": hashlib.sha256(archive).hexdigest()}
    if progress:
        progress(100, f"{len(objects)} objects, {len(archive)} bytes")
    return archive, manifest


def _load(archive: bytes, manifest: dict[str, Any] | None, expect_cluster: str) -> dict[str, Any]:
    """The archive's document once every check passed; BackupError naming the first that failed."""
    if not isinstance(archive, bytes | bytearray) or not archive:
        raise BackupError("The backup archive is empty.")
    archive = bytes(archive)
    if manifest is not None:
        if not isinstance(manifest, dict):
            raise BackupError("The backup's manifest is not a JSON object.")
        if manifest.get("format") != FORMAT:
            raise BackupError(f"The backup's manifest has format {manifest.get('format')!r}, not {FORMAT!r}.")
        if manifest.get("cluster") != expect_cluster:
            raise BackupError(f"The backup belongs to cluster {manifest.get('cluster')!r} "
                              f"({manifest.get('cluster_name') or 'unnamed'}), not to {expect_cluster!r}.")
        if manifest.get("size") != len(archive):
            raise BackupError(f"The backup archive is {len(archive)} bytes; its manifest says {manifest.get('size')}: "
                              "it was truncated or altered.")
        digest = hashlib.sha256(archive).hexdigest()
        if manifest.get("sha256") != digest:
            raise BackupError(f"The backup archive's SHA-256 is {digest}, its manifest says {manifest.get('sha256')}: "
                              "it was altered.")
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(archive)) as stream:
            raw = stream.read(MAX_DOCUMENT_BYTES + 1)
    except EOFError:
        raise BackupError("The backup archive is truncated (the gzip stream ends early).") from None
    except (OSError, zlib.error) as exc:
        raise BackupError(f"The backup archive is not a valid gzip file: {exc}.") from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise BackupError(f"The backup archive unpacks to more than {MAX_DOCUMENT_BYTES} bytes; refused.")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise BackupError(f"The backup archive does not hold a JSON document: {exc}.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("manifest"), dict) \
            or not isinstance(doc.get("resources"), dict) or not isinstance(doc.get("objects"), list):
        raise BackupError("The backup archive's document lacks its manifest, resources or objects.")
    inner = doc["manifest"]
    if inner.get("format") != FORMAT:
        raise BackupError(f"The backup archive has format {inner.get('format')!r}, not {FORMAT!r}.")
    if inner.get("cluster") != expect_cluster:
        raise BackupError(f"The backup archive was taken of cluster {inner.get('cluster')!r} "
                          f"({inner.get('cluster_name') or 'unnamed'}), not of {expect_cluster!r}.")
    if inner.get("content_sha256") != _content_sha256(doc["resources"], doc["objects"]):
        raise BackupError("The backup archive's objects do not match its own checksum: it was altered.")
    if manifest is not None:
        differs = sorted(k for k in inner if manifest.get(k) != inner[k])
        if differs:
            raise BackupError(f"The manifest does not describe this archive (they differ in {', '.join(differs)}).")
    inventory_of: list[list[str]] = []
    for position, entry in enumerate(doc["objects"], 1):
        res = doc["resources"].get(entry.get("resource")) if isinstance(entry, dict) else None
        obj = entry.get("object") if isinstance(entry, dict) else None
        if not isinstance(res, dict) or not isinstance(obj, dict) or not (obj.get("metadata") or {}).get("name") \
                or not obj.get("apiVersion") or not obj.get("kind"):
            raise BackupError(f"Object {position} of the backup archive is malformed.")
        meta = obj["metadata"]
        inventory_of.append([entry["resource"], meta.get("namespace", "") if res.get("namespaced") else "", meta["name"]])
    if inventory_of != inner.get("inventory"):
        raise BackupError("The backup archive's objects do not match its inventory.")
    return doc


def verify(archive: bytes, manifest: dict[str, Any] | None, *, expect_cluster: str) -> dict[str, Any]:
    """Check an archive before anyone relies on it; its manifest (with size and SHA-256) when it passes.

    Checks, in order: the stored manifest's format, cluster, size and SHA-256 against the bytes (when
    given), the gzip stream, the JSON document, its own cluster and content checksum, that both
    manifests agree, and that every object is well-formed and listed in the inventory. Reads only.
    """
    doc = _load(archive, manifest, expect_cluster)
    return {**doc["manifest"], "size": len(archive), "sha256": hashlib.sha256(archive).hexdigest()}


# ---------------------------------------------------------------------- restore
@dataclass
class RestoreReport:
    """What a restore did to each object, and how the cluster now compares with the backup.

    ``restore`` returns it as a JSON-ready dict (``as_dict``): a job keeps it as its result.
    """

    cluster: str
    cluster_name: str
    backup_created: str
    created: list[Ref] = field(default_factory=list)
    updated: list[Ref] = field(default_factory=list)
    unchanged: list[Ref] = field(default_factory=list)
    pruned: list[Ref] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)  # resource, namespace, name, reason
    notes: list[str] = field(default_factory=list)
    diff: dict[str, list[Ref]] = field(default_factory=lambda: {"missing": [], "extra": []})
    compare_error: str = ""  # the cluster could not be read back after the restore

    @property
    def ok(self) -> bool:
        return not self.failed and not self.diff["missing"] and not self.compare_error

    def fail(self, ref: Ref, reason: str) -> None:
        self.failed.append({"resource": ref[0], "namespace": ref[1], "name": ref[2], "reason": reason})

    def as_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "cluster_name": self.cluster_name, "backup_created": self.backup_created,
                "ok": self.ok, "created": [list(r) for r in self.created], "updated": [list(r) for r in self.updated],
                "unchanged": [list(r) for r in self.unchanged], "pruned": [list(r) for r in self.pruned],
                "failed": self.failed, "notes": self.notes, "compare_error": self.compare_error,
                "difference": {k: [list(r) for r in v] for k, v in self.diff.items()}}


def _phase(key: str, obj: dict[str, Any]) -> tuple[int, int]:
    """(phase, rank within it). Owned objects come after the rest, whatever their kind, so that their
    owners exist and lend them their new uids; LAST after everything."""
    if key in LAST:
        return (len(PHASES) + 2, 0)
    if (obj.get("metadata") or {}).get("ownerReferences"):
        return (len(PHASES) + 1, 0)
    for i, keys in enumerate(PHASES):
        if key in keys:
            return (i, keys.index(key))
    return (len(PHASES), 0)


def _owner_depths(entries: list[tuple[str, dict[str, Any]]]) -> dict[int, int]:
    """How many owners deep each object sits among the backup's objects (by position), for ordering."""
    index: dict[tuple[str, str, str, str], int] = {}
    for i, (_key, obj) in enumerate(entries):
        meta = obj["metadata"]
        group = obj["apiVersion"].rsplit("/", 1)[0] if "/" in obj["apiVersion"] else ""
        index[(group, obj["kind"], meta.get("namespace", ""), meta["name"])] = i
        index.setdefault((group, obj["kind"], "", meta["name"]), i)
    depths: dict[int, int] = {}

    def depth(i: int, seen: frozenset[int]) -> int:
        if i in depths:
            return depths[i]
        meta = entries[i][1]["metadata"]
        best = 0
        for ref in meta.get("ownerReferences") or []:
            api_version = ref.get("apiVersion", "")
            group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
            owner = index.get((group, ref.get("kind", ""), meta.get("namespace", ""), ref.get("name", "")))
            if owner is None:
                owner = index.get((group, ref.get("kind", ""), "", ref.get("name", "")))
            if owner is not None and owner not in seen:
                best = max(best, 1 + depth(owner, seen | {i}))
        depths[i] = best
        return best

    for i in range(len(entries)):
        depth(i, frozenset())
    return depths


class _Restorer:
    def __init__(self, api: ClusterApi, doc: dict[str, Any], report: RestoreReport, wait_timeout: float):
        self.api = api
        self.archived = {k: Resource.from_dict(v) for k, v in doc["resources"].items()}
        self.report = report
        self.wait_timeout = wait_timeout
        self.live = discover(api)
        self.uids: dict[tuple[str, str, str, str], str | None] = {}  # (group, kind, namespace, name) -> live uid
        self.converted: set[str] = set()  # resources applied at another version than archived

    def rediscover(self) -> None:
        self.live = discover(self.api)
        self.uids.clear()

    def resolve(self, key: str) -> tuple[Resource | None, str]:
        """The live resource at the archived version when served, else at the version the cluster prefers."""
        archived = self.archived[key]
        live = self.live.resources.get(key)
        if live is None:
            return None, f"the cluster does not serve {key}"
        if "create" not in live.verbs:
            return None, f"the cluster does not let {key} be created"
        if archived.version in live.versions:
            return live.at(archived.version), ""
        if key not in self.converted:
            self.converted.add(key)
            self.report.notes.append(f"{key} restored as {live.api_version}: {archived.api_version} is not served")
        return live, ""

    def owner_uid(self, ref: dict[str, Any], namespace: str) -> str | None:
        api_version = ref.get("apiVersion", "")
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        key = (group, ref.get("kind", ""), namespace, ref.get("name", ""))
        if key not in self.uids:
            res = self.live.by_kind(group, ref.get("kind", ""))
            live = self.api.exists(res.path(namespace if res.namespaced else "", ref.get("name", ""))) if res else None
            self.uids[key] = (live or {}).get("metadata", {}).get("uid")
        return self.uids[key]

    def prepare(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        """The body to send: owners' uids as they are now, service-account tokens that can still work."""
        body = copy.deepcopy(obj)
        body["apiVersion"] = res.api_version
        meta = body.setdefault("metadata", {})
        namespace = meta.get("namespace", "") if res.namespaced else ""
        refs = []
        for ref in meta.get("ownerReferences") or []:
            uid = self.owner_uid(ref, namespace)
            if uid:
                refs.append({**ref, "uid": uid})
            else:  # an owner that is not there would have the garbage collector delete the object at once
                self.report.notes.append(f"{res.key} {namespace}/{meta.get('name')}: owner {ref.get('kind')} "
                                         f"{ref.get('name')} is not in the cluster; restored without it")
        if refs:
            meta["ownerReferences"] = refs
        else:
            meta.pop("ownerReferences", None)
        annotations = meta.get("annotations") or {}
        if res.key == "secrets" and body.get("type") == SA_TOKEN and annotations.get(SA_UID):
            sa = self.owner_uid({"apiVersion": "v1", "kind": "ServiceAccount", "name": annotations.get(SA_NAME, "")},
                                namespace)
            if sa != annotations[SA_UID]:
                # The token names the old account's uid and would be refused; let the token controller
                # mint one for the account as it is now.
                annotations.pop(SA_UID)
                (body.get("data") or {}).pop("token", None)
        return body

    def apply(self, res: Resource, obj: dict[str, Any], ref: Ref) -> None:
        """Create the object, or replace it when it exists and differs; the outcome goes to the report."""
        try:
            body = self.prepare(res, obj)
            self.api.request("POST", res.path(ref[1]), body)
            self.report.created.append(ref)
            return
        except kube.ClusterError as exc:
            if exc.unreachable:
                raise
            if exc.status != 409:
                self.report.fail(ref, exc.reason)
                return
        for _attempt in range(3):
            try:
                live = self.api.exists(res.path(ref[1], ref[2]))
                if live is None:
                    self.api.request("POST", res.path(ref[1]), body)
                    self.report.created.append(ref)
                    return
                if clean(res, live) == clean(res, body):
                    self.report.unchanged.append(ref)
                    return
                self.api.request("PUT", res.path(ref[1], ref[2]), _carry_over(res, live, body))
                self.report.updated.append(ref)
                return
            except kube.ClusterError as exc:
                if exc.unreachable:
                    raise
                if exc.status != 409:
                    self.report.fail(ref, exc.reason)
                    return
        self.report.fail(ref, "the object kept changing while it was replaced (409 Conflict three times)")

    def wait_namespace_gone(self, name: str) -> None:
        """A namespace being deleted cannot take new objects: wait for it to go before creating it again."""
        path = f"/api/v1/namespaces/{name}"
        deadline = time.monotonic() + self.wait_timeout
        while True:
            try:
                live = self.api.exists(path)
            except kube.ClusterError as exc:
                if exc.unreachable:
                    raise
                return  # creating it will say what is wrong
            if live is None or not live["metadata"].get("deletionTimestamp"):
                return
            if time.monotonic() > deadline:
                self.report.notes.append(f"namespace {name} was still terminating after {self.wait_timeout:g} s")
                return
            time.sleep(0.2)

    def wait_served(self, crd: dict[str, Any]) -> str:
        """Custom objects can be created once the CRD is Established and discovery lists them; "" then."""
        spec = crd.get("spec") or {}
        group, plural = spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
        key = f"{plural}.{group}"
        version = self.archived[key].version if key in self.archived else \
            next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), spec.get("version", ""))
        deadline = time.monotonic() + self.wait_timeout
        while True:
            try:
                live = self.api.exists(self.live.resources[CRDS].path(name=key))
                established = any(c.get("type") == "Established" and c.get("status") == "True"
                                  for c in ((live or {}).get("status") or {}).get("conditions") or [])
                listing = self.api.exists(f"/apis/{group}/{version}") if established else None
            except kube.ClusterError as exc:
                if exc.unreachable:
                    raise
                return f"CustomResourceDefinition {key} could not be read: {exc.reason}"
            if listing and any(r.get("name") == plural for r in listing.get("resources") or []):
                return ""
            if time.monotonic() > deadline:
                return f"CustomResourceDefinition {key} was not served within {self.wait_timeout:g} s"
            time.sleep(0.2)


def restore(api: ClusterApi, archive: bytes, *, expect_cluster: str, manifest: dict[str, Any] | None = None,
            prune: bool = False, progress: Progress | None = None,
            wait_timeout: float = WAIT_TIMEOUT) -> dict[str, Any]:
    """Put a backup's objects back: create what is missing, replace what differs, and report.

    The archive is verified, and the cluster must be ``expect_cluster``, before anything is written.
    Objects are applied in dependency order: Namespaces, CRDs (then waiting until they are served),
    ServiceAccounts, Secrets and ConfigMaps, RBAC, the rest, webhooks and API services last;
    cluster-scoped before namespaced. An object that exists is replaced (PUT with its live
    resourceVersion) when it differs. Objects the backup lacks are left alone unless ``prune``: then
    they are deleted, except the system namespaces, volatile kinds and objects that have owners.

    The report (``RestoreReport.as_dict``): ``created``, ``updated``, ``unchanged``, ``pruned`` as
    [resource, namespace, name]; ``failed`` with a reason each; ``notes``; ``difference``, the backup's
    inventory against the cluster's afterwards (``missing``/``extra``); ``ok`` when nothing failed or
    is missing.
    """
    doc = _load(archive, manifest, expect_cluster)
    inner = doc["manifest"]
    live_cluster = cluster_identity(api)
    if live_cluster != expect_cluster:
        raise BackupError(f"This is cluster {live_cluster!r}, not {expect_cluster!r}: nothing was restored.")
    report = RestoreReport(expect_cluster, inner.get("cluster_name", ""), inner.get("created", ""))
    try:
        restorer = _Restorer(api, doc, report, wait_timeout)
    except kube.ClusterError as exc:
        raise BackupError(f"Cannot read the cluster's API (discovery): {exc.reason}") from None
    filters = Filters.of(**inner.get("filters", {}))
    try:
        _apply_all(restorer, [(e["resource"], e["object"]) for e in doc["objects"]], progress)
        if prune:
            if progress:
                progress(92, "pruning objects the backup does not hold")
            _prune(api, filters, {tuple(r) for r in inner["inventory"]}, report)
    except kube.ClusterError as exc:
        if not exc.unreachable:
            raise
        done = len(report.created) + len(report.updated) + len(report.unchanged)
        raise RestoreInterrupted(f"The cluster stopped answering during the restore, after {done} objects: "
                                 f"{exc.reason}", report.as_dict()) from None
    if progress:
        progress(95, "comparing the cluster with the backup")
    try:
        after = sorted({_ref(r, o) for r, o in _select(api, _discover(api), filters)})
        report.diff = diff(inner["inventory"], after)
    except BackupError as exc:
        report.compare_error = exc.reason
    if progress:
        progress(100, f"{len(report.created)} created, {len(report.updated)} updated, "
                      f"{len(report.unchanged)} unchanged, {len(report.failed)} failed")
    return report.as_dict()


def _apply_all(restorer: _Restorer, entries: list[tuple[str, dict[str, Any]]], progress: Progress | None) -> None:
    """Apply the objects phase by phase; after the CRDs, wait until they are served."""
    archived, report = restorer.archived, restorer.report
    depths = _owner_depths(entries)

    def order(i: int) -> tuple[Any, ...]:
        key, obj = entries[i]
        phase, rank = _phase(key, obj)
        return (phase, archived[key].namespaced, depths[i], rank, key, obj["metadata"].get("namespace", ""),
                obj["metadata"]["name"])

    ordered = [entries[i] for i in sorted(range(len(entries)), key=order)]
    unserved: dict[str, str] = {}  # CRD-defined resource -> why its objects cannot be created
    done = 0
    for phase in sorted({_phase(k, o)[0] for k, o in ordered}):
        batch = [(k, o) for k, o in ordered if _phase(k, o)[0] == phase]
        for key, obj in batch:
            ref = (key, obj["metadata"].get("namespace", "") if archived[key].namespaced else "",
                   obj["metadata"]["name"])
            if key == "namespaces":
                restorer.wait_namespace_gone(ref[2])
            res, why = restorer.resolve(key)
            if res is None:
                report.fail(ref, unserved.get(key) or why)
            else:
                restorer.apply(res, obj, ref)
            done += 1
            if progress:
                progress(90 * done // len(ordered), f"{key} {'/'.join(p for p in ref[1:] if p)}")
        crds = [o for k, o in batch if k == CRDS]
        for crd in crds:
            problem = restorer.wait_served(crd)
            if problem:
                unserved[crd["metadata"]["name"]] = problem
        if crds:
            restorer.rediscover()


def _prune(api: ClusterApi, filters: Filters, keep: set[tuple[str, ...]], report: RestoreReport) -> None:
    """Delete what the backup's scope holds now but the backup did not, dependents before what they need."""
    current = _select(api, _discover(api), filters)
    current.sort(key=lambda ro: (_phase(ro[0].key, ro[1]), ro[0].namespaced), reverse=True)
    for res, obj in current:
        ref = _ref(res, obj)
        meta = obj.get("metadata") or {}
        if ref in keep or res.key in VOLATILE or meta.get("ownerReferences"):
            continue  # owned objects follow their owners through the garbage collector
        if res.key == "namespaces" and ref[2] in PROTECTED_NAMESPACES:
            continue
        try:
            api.request("DELETE", res.path(ref[1], ref[2]), query={"propagationPolicy": "Background"})
            report.pruned.append(ref)
        except kube.ClusterError as exc:
            if exc.unreachable:
                raise
            if exc.status != 404:
                report.fail(ref, f"prune: {exc.reason}")
