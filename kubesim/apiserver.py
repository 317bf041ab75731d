"""The REST semantics of one simulated kube-apiserver.

HTTP-agnostic: `handle()` takes a parsed request and returns a `Response`
(or a streaming one for watches).  Controllers call the same `create`,
`update`, `patch` and `delete` methods, so their writes get the same
defaulting, resourceVersions and watch events as a client's.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from . import admission, dryrun, errors, openapi, schemas, ssa
from .errors import ApiError
from .patch import json_patch, merge_patch, strategic_merge
from .resources import ResourceType
from .selectors import LabelTest, parse_field_selector, parse_label_selector
from .store import Entry, encode
from .tables import build_table, table_for
from .util import dig, new_uid, now_iso, rand_suffix, set_condition

if TYPE_CHECKING:
    from .cluster import Cluster

JSON = "application/json"
REVIEW_GROUPS = frozenset({"authorization.k8s.io", "authentication.k8s.io"})
SPEC_KINDS_RESET_STATUS = {"Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job", "PodDisruptionBudget"}


@dataclass
class Request:
    method: str
    path: str  # relative to the cluster's base URL
    query: dict[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""
    user: Any = None  # authz.UserInfo of a non-admin identity (None: the cluster's admin)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, encode(obj) if not isinstance(obj, bytes) else obj, JSON, headers or {})


def truthy(v: str | None) -> bool:
    return (v or "").lower() in ("true", "1")


@dataclass
class ListOptions:
    label: LabelTest | None = None
    fields: list[tuple[str, str, bool]] | None = None
    limit: int = 0
    cont: str = ""
    rv: str = ""

    def matches(self, rt: ResourceType, ns: str, name: str, entry: Entry) -> bool:
        if self.label is not None and not self.label(entry.labels):
            return False
        if self.fields:
            for f, v, eq in self.fields:
                if f == "metadata.name":
                    got = name
                elif f == "metadata.namespace":
                    got = ns
                else:
                    idx = rt.field_names.index(f)
                    got = entry.fields[idx] if entry.fields else ""
                    if f == "source" and not got:
                        got = ""
                if (got == v) != eq:
                    return False
        return True


class ApiServer:
    """Request handling for one cluster; every state change holds the store lock."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.store = cluster.store
        self.stopping = threading.Event()

    # ------------------------------------------------------------------ routing
    def handle(self, req: Request) -> Response:
        try:
            if dryrun.requested(req):
                with dryrun.active(self.store):
                    return schemas.respond(self._route(req))
            return schemas.respond(self._route(req))
        except ApiError as e:
            return json_response(e.code, e.status(), e.headers)
        finally:
            ssa.end()
            schemas.end()

    def _route(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        idx = self.cluster.types()
        if path == "/version":
            return json_response(200, self.cluster.version_info())
        if path in ("/healthz", "/livez", "/readyz"):
            return Response(200, b"ok", "text/plain; charset=utf-8")
        if path == "/api":
            return json_response(200, idx.api_versions(self.cluster.server_address()))
        if path == "/apis" or path.startswith("/apis/metrics.k8s.io"):
            from . import metrics  # metrics-server's aggregated API, while it runs (metrics.py)

            if path == "/apis":
                return json_response(200, metrics.group_list(self.cluster, idx.group_list()))
            if path == "/apis/metrics.k8s.io" or path.startswith("/apis/metrics.k8s.io/"):
                return metrics.handle(self.cluster, path, req)
        if path.startswith("/openapi/"):
            return openapi.handle(self.cluster, idx, path, req)
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 2:
            group = parts[1]
            if len(parts) == 2:
                doc = idx.group(group)
                if doc is None:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                return json_response(200, doc)
            version, rest = parts[2], parts[3:]
        else:
            return Response(404, b"404 page not found\n", "text/plain; charset=utf-8")
        if not rest:
            doc = idx.resource_list(group, version)
            if doc is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return json_response(200, doc)
        watch = truthy(req.query.get("watch"))
        if rest[0] == "watch":
            watch, rest = True, rest[1:]
        ns = None
        if rest and rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            ns, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        rt = idx.lookup(group, version, rest[0])
        if rt is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if rt.namespaced and ns is None and name is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rt.namespaced:
            ns = None
        if sub and not rt.subresource(sub):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return self._dispatch(req, rt, version, ns, name, sub, watch)

    def _dispatch(self, req: Request, rt: ResourceType, version: str, ns: str | None, name: str | None,
                  sub: str | None, watch: bool) -> Response:
        m = req.method
        ssa.begin(req, rt, ns, name, sub)
        schemas.begin(req.query, self.cluster.minor, req.body if m in ("POST", "PUT", "PATCH") else b"")  # fieldValidation
        if rt.group in REVIEW_GROUPS:  # access reviews (authz.py): answered, never stored
            from .authz import review

            return review(self.cluster, req, rt, version, ns)
        as_table = _wants_table(req.headers.get("accept", ""))
        if name is None:
            if m == "GET":
                opts = self._list_options(rt, req.query)
                if watch:
                    return self.watch(rt, version, ns, opts, req.query, as_table)
                return self.list_response(rt, version, ns, opts, as_table, req.query.get("includeObject", "Metadata"))
            if m == "POST":
                if rt.plural == "bindings":
                    body = self._body(req)
                    return json_response(201, self.bind(ns or "", dig(body, "metadata", "name", default=""), body))
                obj = self._body(req)
                schemas.check(self.cluster, rt, obj)
                dry = "All" in req.query.get("dryRun", "")
                created = self.create(rt, ns, obj, version, dry_run=dry)
                return json_response(201, self.convert(created, rt, version))
            if m == "DELETE":
                opts = self._list_options(rt, req.query)
                return json_response(200, self.delete_collection(rt, version, ns, opts, self._delete_options(req)))
            raise errors.method_not_allowed()
        if watch:
            opts = self._list_options(rt, req.query)
            opts.fields = (opts.fields or []) + [("metadata.name", name, True)]
            return self.watch(rt, version, ns, opts, req.query, as_table)
        if sub is None:
            if m == "GET":
                obj = self.get(rt, ns or "", name)
                return self._one(obj, rt, version, as_table, req.query.get("includeObject", "Metadata"))
            if m == "PUT":
                body = self._body(req)
                schemas.check(self.cluster, rt, body, self.store.get(rt.key, ns or "", name) if rt.namespaced else
                              self.store.get(rt.key, "", name))
                return json_response(200, self.convert(self.update(rt, ns or "", name, body), rt, version))
            if m == "PATCH":
                out = self.patch(rt, ns or "", name, req.headers.get("content-type", ""), req.body,
                                 force=truthy(req.query.get("force")))
                return json_response(200, self.convert(out, rt, version))
            if m == "DELETE":
                return json_response(200, self.convert(self.delete(rt, ns or "", name, self._delete_options(req)), rt, version))
            raise errors.method_not_allowed()
        return self._subresource(req, rt, version, ns or "", name, sub, as_table)

    def _subresource(self, req: Request, rt: ResourceType, version: str, ns: str, name: str, sub: str,
                     as_table: bool) -> Response:
        m = req.method
        if sub == "status":
            if m == "GET":
                return self._one(self.get(rt, ns, name), rt, version, as_table, "Metadata")
            if m == "PUT":
                return json_response(200, self.convert(self.update(rt, ns, name, self._body(req), subresource="status"), rt, version))
            if m == "PATCH":
                out = self.patch(rt, ns, name, req.headers.get("content-type", ""), req.body, subresource="status")
                return json_response(200, self.convert(out, rt, version))
        elif sub == "scale":
            if m == "GET":
                return json_response(200, self.scale_of(rt, self.get(rt, ns, name)))
            if m in ("PUT", "PATCH"):
                return json_response(200, self.set_scale(rt, ns, name, req))
        elif sub == "eviction" and m == "POST":
            return json_response(201, self.cluster.evict(ns, name, self._body(req)))
        elif sub == "binding" and m == "POST":
            return json_response(201, self.bind(ns, name, self._body(req)))
        elif sub == "log" and m == "GET":
            return self.pod_log(self.get(rt, ns, name), req.query)
        elif sub == "finalize" and m == "PUT":
            body = self._body(req)
            return json_response(200, self.update(rt, ns, name, body, subresource="finalize"))
        raise errors.method_not_allowed()

    def pod_log(self, pod: dict[str, Any], q: dict[str, str]) -> Response:
        """The kubelet's log of one container: what a host-run container printed (SUC Jobs' images),
        else one line saying the container is simulated."""
        meta = pod["metadata"]
        c = q.get("container") or dig(pod, "spec", "containers", 0, "name", default="")
        node = dig(pod, "spec", "nodeName", default="") or ""
        names = [x.get("name") for x in (pod["spec"].get("initContainers") or []) + (pod["spec"].get("containers") or [])]
        if q.get("container") and c not in names:
            raise errors.bad_request(f"container {c} is not valid for pod {meta['name']}")
        runtime = self.cluster.nodes.get(node)
        lines = runtime.logs.lines(meta.get("uid", ""), c) if runtime is not None else None
        seen = len(lines) if lines is not None else 0
        if lines is None:
            lines = [(now_iso(), f"kubesim: simulated container {c} of pod {meta['namespace']}/{meta['name']} "
                                 f"on {node or '<none>'}")]
        tail = q.get("tailLines")
        if tail and tail.lstrip("-").isdigit() and int(tail) >= 0:
            lines = lines[len(lines) - int(tail):] if int(tail) else []
        stamps = truthy(q.get("timestamps"))
        if truthy(q.get("follow")):  # streamed until the pod ends or the client leaves (podlogs.py)
            from .podlogs import follow

            return follow(self, pod, c, lines, seen, stamps, q.get("limitBytes"))
        text = "".join(f"{ts} {line}\n" if stamps else f"{line}\n" for ts, line in lines).encode()
        limit = q.get("limitBytes")
        if limit and limit.isdigit() and int(limit) > 0:
            text = text[: int(limit)]
        return Response(200, text, "text/plain")

    # ------------------------------------------------------------------ helpers
    def _body(self, req: Request) -> dict[str, Any]:
        ctype = req.headers.get("content-type", "").split(";")[0].strip()
        if ctype == "application/vnd.kubernetes.protobuf":
            from .protobuf import decode

            return decode(req.body)
        if ctype and ctype not in (JSON, "application/yaml", "*/*", "text/plain") and not ctype.endswith("+json"):
            raise errors.unsupported_media_type(ctype)
        try:
            obj = yaml.safe_load(req.body) if ctype == "application/yaml" else json.loads(req.body or b"{}")
        except (ValueError, yaml.YAMLError) as e:
            raise errors.bad_request(f"error decoding request body: {e}") from None
        if not isinstance(obj, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        return obj

    def _list_options(self, rt: ResourceType, q: dict[str, str]) -> ListOptions:
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            raise errors.bad_request("invalid limit") from None
        fields = parse_field_selector(q.get("fieldSelector"), rt.field_names)
        return ListOptions(parse_label_selector(q.get("labelSelector")), fields, limit, q.get("continue", ""),
                           q.get("resourceVersion", ""))

    def _delete_options(self, req: Request) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if req.body.strip():
            try:
                opts = json.loads(req.body)
            except ValueError:
                raise errors.bad_request("error decoding DeleteOptions") from None
        q = req.query
        if "gracePeriodSeconds" in q:
            opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if "orphanDependents" in q:
            opts["orphanDependents"] = truthy(q["orphanDependents"])
        if "dryRun" in q:
            opts["dryRun"] = [q["dryRun"]]
        return opts

    def _one(self, obj: dict[str, Any], rt: ResourceType, version: str, as_table: bool, include: str) -> Response:
        obj = self.convert(obj, rt, version)
        if as_table:
            meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            return json_response(200, build_table([obj], self.table_of(rt), include, "v1", meta))
        return json_response(200, obj)

    def table_of(self, rt: ResourceType) -> Any:
        return table_for(rt.kind, rt.printer_columns, rt.custom)

    def api_version(self, rt: ResourceType, version: str | None = None) -> str:
        v = version or self.cluster.types().storage_version(rt)
        return f"{rt.group}/{v}" if rt.group else v

    def convert(self, obj: dict[str, Any], rt: ResourceType, version: str) -> dict[str, Any]:
        """Serve an object in the requested version (only apiVersion differs between ours)."""
        want = f"{rt.group}/{version}" if rt.group else version
        if obj.get("apiVersion") != want:
            obj = dict(obj)
            obj["apiVersion"] = want
        return obj

    def entry_bytes(self, entry: Entry, rt: ResourceType, want: str) -> bytes:
        if len(rt.versions) > 1 and f'"apiVersion":"{want}"'.encode() not in entry.data[:200]:
            obj = entry.obj()
            obj["apiVersion"] = want
            return encode(obj)
        return entry.data

    # ------------------------------------------------------------------ reads
    def get(self, rt: ResourceType, ns: str, name: str) -> dict[str, Any]:
        e = self.store.entry(rt.key, ns if rt.namespaced else "", name)
        if e is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return e.obj()

    def select(self, rt: ResourceType, ns: str | None, opts: ListOptions) -> tuple[int, list[tuple[tuple[str, str], Entry]]]:
        with self.store.lock:
            rv = self.store.rv
            items = self.store.entries(rt.key, ns if rt.namespaced else None)
        if opts.label is not None or opts.fields:
            items = [(k, e) for k, e in items if opts.matches(rt, k[0], k[1], e)]
        items.sort(key=lambda kv: kv[0])
        return rv, items

    def list_response(self, rt: ResourceType, version: str, ns: str | None, opts: ListOptions, as_table: bool,
                      include: str) -> Response:
        rv, items = self.select(rt, ns, opts)
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if opts.cont:
            try:
                token = json.loads(base64.urlsafe_b64decode(opts.cont.encode()))
                start_key = tuple(token["start"])
                rv = int(token["rv"])
            except (ValueError, KeyError, TypeError):
                raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion") from None
            meta["resourceVersion"] = str(rv)
            items = [kv for kv in items if kv[0] > start_key]
        if opts.limit and len(items) > opts.limit:
            rest = len(items) - opts.limit
            items = items[: opts.limit]
            token = {"rv": rv, "start": list(items[-1][0])}
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            meta["remainingItemCount"] = rest
        want = self.api_version(rt, version)
        if as_table:
            objs = [json.loads(self.entry_bytes(e, rt, want)) for _, e in items]
            return json_response(200, build_table(objs, self.table_of(rt), include, "v1", meta))
        head = encode({"kind": rt.kind + "List", "apiVersion": want, "metadata": meta})
        body = b"".join((head[:-1], b',"items":[', b",".join(self.entry_bytes(e, rt, want) for _, e in items), b"]}"))
        return Response(200, body)

    # ------------------------------------------------------------------ watch
    def watch(self, rt: ResourceType, version: str, ns: str | None, opts: ListOptions, q: dict[str, str],
              as_table: bool) -> Response:
        from .watch import watch_response

        return watch_response(self, rt, version, ns, opts, q, as_table)

    # ------------------------------------------------------------------ writes
    def create(self, rt: ResourceType, ns: str | None, obj: dict[str, Any], version: str | None = None,
               dry_run: bool = False, internal: bool = False) -> dict[str, Any]:
        cluster = self.cluster
        if "create" not in rt.verbs and not internal:
            raise errors.method_not_allowed()
        want = self.api_version(rt, version)
        if obj.get("kind") and obj["kind"] != rt.kind:
            raise errors.bad_request(f"the API version in the data ({obj.get('apiVersion')}) does not match the expected API version ({want})")
        obj["apiVersion"] = self.api_version(rt)
        obj["kind"] = rt.kind
        meta = obj.setdefault("metadata", {})
        if meta is None or not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if ns and body_ns and body_ns != ns:
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = ns or body_ns or "default"
        else:
            meta.pop("namespace", None)
        with self.store.lock:
            if not meta.get("name"):
                if meta.get("generateName"):
                    meta["name"] = meta["generateName"] + rand_suffix()
                else:
                    raise errors.invalid(rt.kind, rt.group, "", [("FieldValueRequired", "metadata.name",
                                                                  "Required value: name or generateName is required")])
            name = meta["name"]
            key_ns = meta.get("namespace", "")
            if rt.namespaced:
                nsobj = self.store.get("namespaces", "", key_ns)
                if nsobj is None:
                    raise errors.not_found("namespaces", "", key_ns)
                if dig(nsobj, "status", "phase") == "Terminating":
                    raise ApiError(403, "Forbidden", f"{rt.plural} \"{name}\" is forbidden: unable to create new content in namespace {key_ns} because it is being terminated",
                                   {"name": name, "kind": rt.plural, "causes": [{"reason": "NamespaceTerminating", "message": f"namespace {key_ns} is being terminated", "field": "metadata.namespace"}]})
            if self.store.entry(rt.key, key_ns, name) is not None:
                raise errors.already_exists(rt.plural, rt.group, name)
            if rt.kind in SPEC_KINDS_RESET_STATUS or (rt.custom and rt.has_status):
                obj.pop("status", None)
            if rt.kind == "Pod":
                obj["status"] = {}
            admission.apply_defaults(rt.kind, obj, cluster.minor)
            admission.validate(rt.kind, rt.group, obj, None)
            for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
                meta.pop(k, None)
            meta["uid"] = new_uid()
            meta["creationTimestamp"] = now_iso()
            if rt.kind not in ("Event",):
                meta["generation"] = 1
            cluster.on_create(rt, obj)
            ssa.on_create(self, rt, obj)
            if dry_run:
                return obj
            self.store.put(rt.key, obj, rt.field_getter)
            cluster.after_write(rt, obj, "ADDED")
            return obj

    def update(self, rt: ResourceType, ns: str, name: str, obj: dict[str, Any], subresource: str | None = None,
               check_rv: bool = True) -> dict[str, Any]:
        ns = ns if rt.namespaced else ""
        with self.store.lock:
            old_entry = self.store.entry(rt.key, ns, name)
            if old_entry is None:
                raise errors.not_found(rt.plural, rt.group, name)
            old = old_entry.obj()
            meta = obj.get("metadata") or {}
            if meta.get("name") and meta["name"] != name:
                raise errors.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
            body_rv = meta.get("resourceVersion")
            if check_rv and body_rv and body_rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict(rt.plural, rt.group, name)
            return self._write_update(rt, old, old_entry, obj, subresource)

    def _write_update(self, rt: ResourceType, old: dict[str, Any], old_entry: Entry, obj: dict[str, Any],
                      subresource: str | None) -> dict[str, Any]:
        cluster = self.cluster
        om = old["metadata"]
        if subresource == "status":
            new = json.loads(old_entry.data)
            new["status"] = obj.get("status", {})
        elif subresource == "finalize":
            new = json.loads(old_entry.data)
            new.setdefault("spec", {})["finalizers"] = dig(obj, "spec", "finalizers", default=[])
        else:
            new = dict(obj)
            new["apiVersion"] = old["apiVersion"]
            new["kind"] = old["kind"]
            if rt.has_status:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            admission.apply_defaults(rt.kind, new, cluster.minor)
            admission.validate(rt.kind, rt.group, new, old)
        meta = new.setdefault("metadata", {})
        new["metadata"] = meta = dict(meta)
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace", "name",
                  "generation"):
            if k in om:
                meta[k] = om[k]
            else:
                meta.pop(k, None)
        if "generation" in om and subresource is None:
            strip = ("metadata", "status")
            if {k: v for k, v in new.items() if k not in strip} != {k: v for k, v in old.items() if k not in strip}:
                meta["generation"] = om["generation"] + 1
        meta["resourceVersion"] = om["resourceVersion"]
        ssa.on_update(self, rt, old, new, subresource)
        if om.get("deletionTimestamp") and not meta.get("finalizers") and rt.kind != "Namespace" and rt.kind != "Pod":
            self.store.remove(rt.key, om.get("namespace", ""), om["name"], new, rt.field_getter)
            cluster.after_write(rt, new, "DELETED")
            return new
        if encode(new) == old_entry.data:
            return new  # no-op: nothing is written, the resourceVersion stays
        cluster.on_update(rt, old, new)
        self.store.put(rt.key, new, rt.field_getter)
        cluster.after_write(rt, new, "MODIFIED")
        if rt.kind == "Namespace" and om.get("deletionTimestamp") and not dig(new, "spec", "finalizers"):
            self.store.remove(rt.key, "", om["name"], None, rt.field_getter)
            cluster.after_write(rt, new, "DELETED")
        return new

    def patch(self, rt: ResourceType, ns: str, name: str, content_type: str, body: bytes,
              subresource: str | None = None, force: bool = False) -> dict[str, Any]:
        ctype = content_type.split(";")[0].strip()
        ns = ns if rt.namespaced else ""
        try:
            if ctype == "application/apply-patch+yaml":
                doc: Any = yaml.safe_load(body)
            else:
                doc = json.loads(body or b"null")
        except (ValueError, yaml.YAMLError) as e:
            raise errors.bad_request(f"error decoding patch: {e}") from None
        if ctype not in ("application/json-patch+json", "application/merge-patch+json",
                         "application/strategic-merge-patch+json", "application/apply-patch+yaml"):
            raise errors.unsupported_media_type(ctype)
        if ctype == "application/strategic-merge-patch+json" and rt.custom:
            raise errors.unsupported_media_type(ctype)
        with self.store.lock:
            old_entry = self.store.entry(rt.key, ns, name)
            if old_entry is None:
                if ctype == "application/apply-patch+yaml" and isinstance(doc, dict):
                    doc.setdefault("metadata", {})["name"] = name
                    return self.create(rt, ns, ssa.apply(self, rt, None, doc, force))
                raise errors.not_found(rt.plural, rt.group, name)
            old = old_entry.obj()
            if ctype == "application/json-patch+json":
                new = json_patch(old, doc)
            elif ctype == "application/merge-patch+json":
                new = merge_patch(old, doc)
            elif ctype == ssa.APPLY:
                new = ssa.apply(self, rt, old, doc, force, subresource)
            else:
                if not isinstance(doc, dict):
                    raise errors.bad_request("patch body must be a JSON object")
                new = strategic_merge(old, doc)
            if not isinstance(new, dict):
                raise errors.bad_request("patch produced a non-object")
            schemas.check(self.cluster, rt, new, old)
            new_rv = dig(new, "metadata", "resourceVersion")
            if new_rv and new_rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict(rt.plural, rt.group, name)
            return self._write_update(rt, old, old_entry, new, subresource)

    def delete(self, rt: ResourceType, ns: str, name: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        options = options or {}
        ns = ns if rt.namespaced else ""
        cluster = self.cluster
        with self.store.lock:
            entry = self.store.entry(rt.key, ns, name)
            if entry is None:
                raise errors.not_found(rt.plural, rt.group, name)
            obj = entry.obj()
            meta = obj["metadata"]
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise errors.conflict(rt.plural, rt.group, name,
                                      f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta.get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
                raise errors.conflict(rt.plural, rt.group, name,
                                      f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {meta.get('resourceVersion')}")
            policy = options.get("propagationPolicy")
            if policy is None and options.get("orphanDependents"):
                policy = "Orphan"
            if policy is None and rt.kind == "Job":
                policy = "Orphan"  # batch/v1 Jobs orphan their pods unless told otherwise (kubectl says Background)
            now = now_iso()
            if rt.kind == "Namespace":
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = now
                    obj.setdefault("status", {})["phase"] = "Terminating"
                    self.store.put(rt.key, obj, rt.field_getter)
                    cluster.after_write(rt, obj, "MODIFIED")
                return obj
            if policy == "Orphan":
                cluster.orphan_dependents(meta.get("uid", ""))
            finalizers = list(meta.get("finalizers") or [])
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if rt.kind == "Pod":
                grace = options.get("gracePeriodSeconds")
                if grace is None:
                    grace = dig(obj, "spec", "terminationGracePeriodSeconds", default=30)
                phase = dig(obj, "status", "phase")
                if (grace > 0 and dig(obj, "spec", "nodeName") and phase not in ("Succeeded", "Failed")) or finalizers:
                    prev = meta.get("deletionGracePeriodSeconds")
                    if prev is None or grace < prev:
                        meta["deletionGracePeriodSeconds"] = grace
                        meta["deletionTimestamp"] = now_iso(time.time() + grace)
                        meta["finalizers"] = finalizers or meta.get("finalizers")
                        if not meta["finalizers"]:
                            meta.pop("finalizers")
                        self.store.put(rt.key, obj, rt.field_getter)
                        cluster.after_write(rt, obj, "MODIFIED")
                    if grace > 0 or finalizers:
                        return obj
            elif finalizers:
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = now
                    meta["deletionGracePeriodSeconds"] = 0
                    meta["finalizers"] = finalizers
                    self.store.put(rt.key, obj, rt.field_getter)
                    cluster.after_write(rt, obj, "MODIFIED")
                return obj
            self.store.remove(rt.key, ns, name, None, rt.field_getter)
            cluster.after_write(rt, obj, "DELETED")
            return obj

    def delete_collection(self, rt: ResourceType, version: str, ns: str | None, opts: ListOptions,
                          options: dict[str, Any]) -> dict[str, Any]:
        _, items = self.select(rt, ns, opts)
        out = []
        for (ins, iname), _e in items:
            try:
                out.append(self.convert(self.delete(rt, ins, iname, options), rt, version))
            except ApiError as e:
                if e.code != 404:
                    raise
        return {"kind": rt.kind + "List", "apiVersion": self.api_version(rt, version),
                "metadata": {"resourceVersion": str(self.store.rv)}, "items": out}

    # ------------------------------------------------------------------ subresources
    def scale_of(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        sel = dig(obj, "spec", "selector", default={}) or {}
        sel_text = ",".join(f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items()))
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: obj["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in obj["metadata"]},
            "spec": {"replicas": dig(obj, "spec", "replicas", default=0)},
            "status": {"replicas": dig(obj, "status", "replicas", default=0), "selector": sel_text},
        }

    def set_scale(self, rt: ResourceType, ns: str, name: str, req: Request) -> dict[str, Any]:
        with self.store.lock:
            obj = self.get(rt, ns, name)
            current = self.scale_of(rt, obj)
            if req.method == "PUT":
                scale = self._body(req)
            else:
                ctype = req.headers.get("content-type", "").split(";")[0]
                doc = json.loads(req.body or b"{}")
                if ctype == "application/json-patch+json":
                    scale = json_patch(current, doc)
                elif ctype == "application/strategic-merge-patch+json":
                    scale = strategic_merge(current, doc)
                else:
                    scale = merge_patch(current, doc)
            rv = dig(scale, "metadata", "resourceVersion")
            if rv and rv != obj["metadata"]["resourceVersion"]:
                raise errors.conflict(rt.plural, rt.group, name)
            replicas = dig(scale, "spec", "replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise errors.invalid("Scale", "autoscaling", name, [("FieldValueInvalid", "spec.replicas",
                                                                     f"Invalid value: {replicas}: must be greater than or equal to 0")])
            obj["spec"]["replicas"] = replicas
            new = self.update(rt, ns, name, obj, check_rv=False)
            return self.scale_of(rt, new)

    def bind(self, ns: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        target = dig(body, "target", "name")
        if not target:
            raise errors.invalid("Binding", "", name, [("FieldValueRequired", "target.name", "Required value")])
        rt = self.cluster.types().by_key["pods"]
        with self.store.lock:
            pod = self.get(rt, ns, name)
            if dig(pod, "spec", "nodeName"):
                raise errors.conflict("pods", "", name, f"pod {name} is already assigned to node \"{pod['spec']['nodeName']}\"")
            pod["spec"]["nodeName"] = target
            set_condition(pod.setdefault("status", {}), "PodScheduled", "True", probe=True)
            self.store.put("pods", pod, rt.field_getter)
            self.cluster.after_write(rt, pod, "MODIFIED")
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def _wants_table(accept: str) -> bool:
    for part in accept.split(","):
        params = [p.strip() for p in part.split(";")]
        if params and params[0] == JSON and "as=Table" in params:
            return True
    return False

