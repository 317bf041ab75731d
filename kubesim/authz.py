"""Authentication of extra identities, RBAC authorization, and the access-review APIs.

The admin token of a cluster stays a member of ``system:masters`` and never gets here
(``server.py`` hands its requests straight to the API server), unless it impersonates.
Every other identity -- a static user token from the fleet file, or a legacy service-account
token (a ``kubernetes.io/service-account-token`` Secret) -- is authorized as kube-apiserver's RBAC
authorizer does, from the Roles, ClusterRoles and bindings live in the store, so a binding made
through the API takes effect at once.  Controllers call the API server directly and are not
subject to it.

Also here: ``authorization.k8s.io`` (SelfSubjectAccessReview, SelfSubjectRulesReview,
SubjectAccessReview, LocalSubjectAccessReview) and ``authentication.k8s.io`` (SelfSubjectReview,
TokenReview).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import errors
from .apiserver import Request, Response, json_response
from .errors import ApiError
from .selectors import parse_field_selector, selector_from_match

if TYPE_CHECKING:
    from .cluster import Cluster
    from .resources import ResourceType

RBAC = "rbac.authorization.k8s.io"
SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_ISSUER = "kubernetes/serviceaccount"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
ADMIN_NAMES = {"rke": "kube-admin", "k3s": "system:admin"}


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""

    @property
    def is_master(self) -> bool:
        return MASTERS in self.groups

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.name}
        if self.uid:
            out["uid"] = self.uid
        out["groups"] = list(self.groups)
        return out


def admin_user(cluster: Cluster) -> UserInfo:
    return UserInfo(ADMIN_NAMES.get(cluster.kind, "kubernetes-admin"), (MASTERS, AUTHENTICATED))


def _with_authenticated(groups: Any) -> tuple[str, ...]:
    out = [str(g) for g in groups or ()]
    if AUTHENTICATED not in out:
        out.append(AUTHENTICATED)
    return tuple(out)


def sa_user(ns: str, name: str, uid: str = "") -> UserInfo:
    return UserInfo(f"system:serviceaccount:{ns}:{name}",
                    ("system:serviceaccounts", f"system:serviceaccounts:{ns}", AUTHENTICATED), uid)


# ---------------------------------------------------------------------- identities (fleet file)
def add_user(cluster: Cluster, name: str, token: str | None = None, groups: Any = ()) -> str:
    """A user with a static bearer token (kube-apiserver's --token-auth-file)."""
    token = token or secrets.token_urlsafe(24)
    cluster.users[token] = UserInfo(name, _with_authenticated(groups))
    return token


def token_of(cluster: Cluster, who: str) -> str | None:
    """The token of a fleet identity: a user's name, ``NS/NAME`` or ``system:serviceaccount:NS:NAME``."""
    for token, user in cluster.users.items():
        if user.name == who:
            return token
    ns, _, name = who.removeprefix("system:serviceaccount:").replace(":", "/").partition("/")
    if not name:
        return None
    for _k, e in cluster.store.entries("secrets", ns):
        sec = e.obj()
        if sec.get("type") == SA_TOKEN_TYPE and \
                (sec["metadata"].get("annotations") or {}).get("kubernetes.io/service-account.name") == name:
            tok = (sec.get("data") or {}).get("token")
            if tok:
                return base64.b64decode(tok).decode()
    return None


def install(cluster: Cluster, users: list[dict[str, Any]], service_accounts: list[dict[str, Any]]) -> None:
    """Fleet-file ``users`` and ``service_accounts`` (bootstrap, under the cluster lock)."""
    from .fleet import create_object

    for u in users:
        if not u.get("name"):
            raise ValueError(f"cluster {cluster.name}: every user needs a name")
        add_user(cluster, str(u["name"]), u.get("token"), u.get("groups") or ())
    for sa in service_accounts:
        name, ns = sa.get("name"), sa.get("namespace", "default")
        if not name:
            raise ValueError(f"cluster {cluster.name}: every service account needs a name")
        create_object(cluster, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}})
        secret: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "type": SA_TOKEN_TYPE,
                                  "metadata": {"name": sa.get("secret") or f"{name}-token",
                                               "namespace": ns,
                                               "annotations": {"kubernetes.io/service-account.name": name}}}
        if sa.get("token"):
            secret["data"] = {"token": base64.b64encode(str(sa["token"]).encode()).decode()}
        create_object(cluster, secret)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def fill_sa_token(cluster: Cluster, secret: dict[str, Any]) -> None:
    """The token controller's part, done at creation: a legacy (non-expiring) JWT in ``data.token``."""
    meta = secret["metadata"]
    if not isinstance(meta.get("annotations"), dict):
        meta["annotations"] = {}
    ann = meta["annotations"]
    sa_name = ann.get("kubernetes.io/service-account.name")
    if not sa_name:
        return
    ns = meta.get("namespace", "default")
    sa = cluster.store.get("serviceaccounts", ns, sa_name)
    uid = (sa or {}).get("metadata", {}).get("uid", "")
    if uid:
        ann.setdefault("kubernetes.io/service-account.uid", uid)
    data = secret.get("data")
    if not isinstance(data, dict):
        data = secret["data"] = {}
    if not data.get("token"):
        claims = {"iss": SA_ISSUER, "kubernetes.io/serviceaccount/namespace": ns,
                  "kubernetes.io/serviceaccount/secret.name": meta["name"],
                  "kubernetes.io/serviceaccount/service-account.name": sa_name,
                  "kubernetes.io/serviceaccount/service-account.uid": uid,
                  "sub": f"system:serviceaccount:{ns}:{sa_name}"}
        head = _b64url(json.dumps({"alg": "HS256", "kid": "kubesim"}, separators=(",", ":")).encode()) + "." + \
            _b64url(json.dumps(claims, separators=(",", ":")).encode())
        sig = hmac.new(f"kubesim:{cluster.name}".encode(), head.encode(), hashlib.sha256).digest()
        data["token"] = base64.b64encode(f"{head}.{_b64url(sig)}".encode()).decode()
    data.setdefault("namespace", base64.b64encode(ns.encode()).decode())
    ca = getattr(cluster, "ca_pem", None)
    if ca:
        data.setdefault("ca.crt", base64.b64encode(ca).decode())


# ---------------------------------------------------------------------- authentication
def authenticate_token(cluster: Cluster, token: str) -> UserInfo | None:
    if not token:
        return None
    if secrets.compare_digest(token, cluster.token):
        return admin_user(cluster)
    user = cluster.users.get(token)
    if user is not None:
        return user
    return _service_account(cluster, token)


def authenticate(cluster: Cluster, header: str | None) -> UserInfo | None:
    """Who a non-admin bearer token is (None: 401)."""
    if not header or not header.startswith("Bearer "):
        return None
    return authenticate_token(cluster, header[7:].strip())


def _claims(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def _service_account(cluster: Cluster, token: str) -> UserInfo | None:
    """A legacy service-account token: valid while its Secret holds it and the account exists."""
    claims = _claims(token)
    if not claims or claims.get("iss") != SA_ISSUER:
        return None
    ns = claims.get("kubernetes.io/serviceaccount/namespace")
    secret_name = claims.get("kubernetes.io/serviceaccount/secret.name")
    sa_name = claims.get("kubernetes.io/serviceaccount/service-account.name")
    if not isinstance(ns, str) or not isinstance(secret_name, str) or not isinstance(sa_name, str):
        return None
    secret = cluster.store.get("secrets", ns, secret_name)
    if secret is None or secret.get("type") != SA_TOKEN_TYPE:
        return None
    stored = (secret.get("data") or {}).get("token") or ""
    try:
        stored = base64.b64decode(stored).decode()
    except ValueError:
        return None
    if not secrets.compare_digest(stored, token):
        return None
    sa = cluster.store.get("serviceaccounts", ns, sa_name)
    if sa is None:
        return None
    return sa_user(ns, sa_name, sa["metadata"].get("uid", ""))


# ---------------------------------------------------------------------- request attributes
@dataclass
class Attributes:
    verb: str
    resource_request: bool
    path: str = ""
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def attributes(method: str, path: str, query: dict[str, str]) -> Attributes:
    """kube-apiserver's RequestInfoFactory: what RBAC is asked about for one request."""
    path = path or "/"
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) < 3 or parts[0] not in ("api", "apis") or (parts[0] == "apis" and len(parts) < 4):
        return Attributes(method.lower(), False, path=path)
    a = Attributes("", True, path=path)
    cur = parts[1:]
    if parts[0] == "apis":
        a.group, cur = cur[0], cur[1:]
    a.version, cur = cur[0], cur[1:]
    if cur[0] in ("watch", "proxy"):
        if len(cur) < 2:
            return Attributes(method.lower(), False, path=path)
        a.verb, cur = cur[0], cur[1:]
    else:
        a.verb = _VERBS.get(method, method.lower())
    if cur[0] == "namespaces":
        if len(cur) > 1:
            a.namespace = cur[1]
            if len(cur) > 2 and cur[2] not in ("status", "finalize"):
                cur = cur[2:]
    if len(cur) >= 3 and a.verb not in ("proxy",):
        a.subresource = cur[2]
    if len(cur) >= 2:
        a.name = cur[1]
    a.resource = cur[0]
    if not a.name and a.verb == "get":
        a.verb = "watch" if query.get("watch", "").lower() in ("true", "1") else "list"
        try:
            fields = parse_field_selector(query.get("fieldSelector"), ("metadata.name",)) or []
        except ApiError:
            fields = []
        for f, v, eq in fields:
            if f == "metadata.name" and eq:
                a.name = v
    if not a.name and a.verb == "delete":
        a.verb = "deletecollection"
    return a


# ---------------------------------------------------------------------- RBAC
def _has(items: Any, value: str) -> bool:
    return isinstance(items, list) and ("*" in items or value in items)


def rule_allows(a: Attributes, rule: dict[str, Any]) -> bool:
    if not _has(rule.get("verbs"), a.verb):
        return False
    if not a.resource_request:
        urls = rule.get("nonResourceURLs") or []
        return any(u == "*" or u == a.path or (u.endswith("*") and a.path.startswith(u[:-1])) for u in urls)
    if not _has(rule.get("apiGroups"), a.group):
        return False
    resources = rule.get("resources") or []
    full = a.full_resource
    if not ("*" in resources or full in resources or (a.subresource and f"*/{a.subresource}" in resources)):
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


def _subject_applies(user: UserInfo, subject: dict[str, Any], binding_ns: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return bool(ns) and user.name == f"system:serviceaccount:{ns}:{name}"
    return False


def _describe_subject(subject: dict[str, Any], binding_ns: str) -> str:
    if subject.get("kind") == "ServiceAccount":
        return f'{subject["kind"]} "{subject.get("name")}/{subject.get("namespace") or binding_ns}"'
    return f'{subject.get("kind")} "{subject.get("name")}"'


def _role_rules(cluster: Cluster, ref: dict[str, Any], ns: str) -> list[dict[str, Any]]:
    kind, name = ref.get("kind"), ref.get("name", "")
    if kind == "ClusterRole":
        role = cluster.store.get(f"clusterroles.{RBAC}", "", name)
        if role is None:
            raise LookupError(f'clusterrole.{RBAC} "{name}" not found')
        rules = list(role.get("rules") or [])
        agg = (role.get("aggregationRule") or {}).get("clusterRoleSelectors")
        if agg:
            tests = [selector_from_match(s) for s in agg]
            for _k, e in cluster.store.entries(f"clusterroles.{RBAC}", None):
                other = e.obj()
                if other["metadata"]["name"] != name and any(t(other["metadata"].get("labels") or {}) for t in tests):
                    rules.extend(r for r in other.get("rules") or [] if r not in rules)
        return rules
    if kind == "Role" and ns:
        role = cluster.store.get(f"roles.{RBAC}", ns, name)
        if role is None:
            raise LookupError(f'role.{RBAC} "{name}" not found')
        return list(role.get("rules") or [])
    raise LookupError(f"unknown role reference kind: {kind!r}")


def _visit(cluster: Cluster, user: UserInfo, ns: str):  # type: ignore[no-untyped-def]
    """(describer, rules, error) for every binding that applies to the user, as RBAC's VisitRulesFor."""
    store = cluster.store
    crbs = sorted((e.obj() for _k, e in store.entries(f"clusterrolebindings.{RBAC}", None)),
                  key=lambda o: o["metadata"]["name"])
    for b in crbs:
        for s in b.get("subjects") or []:
            if _subject_applies(user, s, ""):
                ref = b.get("roleRef") or {}
                desc = f'ClusterRoleBinding "{b["metadata"]["name"]}" of {ref.get("kind")} "{ref.get("name")}" to ' \
                       f'{_describe_subject(s, "")}'
                try:
                    yield desc, _role_rules(cluster, ref, ""), None
                except LookupError as e:
                    yield desc, [], str(e)
                break
    if not ns:
        return
    rbs = sorted((e.obj() for _k, e in store.entries(f"rolebindings.{RBAC}", ns)), key=lambda o: o["metadata"]["name"])
    for b in rbs:
        for s in b.get("subjects") or []:
            if _subject_applies(user, s, ns):
                ref = b.get("roleRef") or {}
                desc = f'RoleBinding "{b["metadata"]["name"]}/{ns}" of {ref.get("kind")} "{ref.get("name")}" to ' \
                       f'{_describe_subject(s, ns)}'
                try:
                    yield desc, _role_rules(cluster, ref, ns), None
                except LookupError as e:
                    yield desc, [], str(e)
                break


def authorize(cluster: Cluster, user: UserInfo, a: Attributes) -> tuple[bool, str]:
    """(allowed, reason) as kube-apiserver's authorizers (system:masters, then RBAC) answer."""
    if user.is_master:
        return True, ""
    errs: list[str] = []
    with cluster.store.lock:
        for desc, rules, err in _visit(cluster, user, a.namespace if a.resource_request else ""):
            if err:
                errs.append(err)
                continue
            for rule in rules:
                if rule_allows(a, rule):
                    return True, f"RBAC: allowed by {desc}"
    if not errs:
        return False, ""
    return False, "RBAC: " + (errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")


def rules_for(cluster: Cluster, user: UserInfo, ns: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """(resourceRules, nonResourceRules, evaluationError) for SelfSubjectRulesReview."""
    res: list[dict[str, Any]] = []
    nonres: list[dict[str, Any]] = []
    if user.is_master:
        res.append({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
        nonres.append({"verbs": ["*"], "nonResourceURLs": ["*"]})
    errs: list[str] = []
    with cluster.store.lock:
        for _desc, rules, err in _visit(cluster, user, ns):
            if err:
                errs.append(err)
            for r in rules:
                if r.get("nonResourceURLs"):
                    nonres.append({"verbs": list(r.get("verbs") or []), "nonResourceURLs": list(r["nonResourceURLs"])})
                else:
                    out = {"verbs": list(r.get("verbs") or []), "apiGroups": list(r.get("apiGroups") or []),
                           "resources": list(r.get("resources") or [])}
                    if r.get("resourceNames"):
                        out["resourceNames"] = list(r["resourceNames"])
                    res.append(out)
    return res, nonres, ("; ".join(errs))


def forbidden(user: UserInfo, a: Attributes, reason: str = "") -> Response:
    """The 403 Status kube-apiserver's responsewriters.Forbidden writes."""
    if not a.resource_request:
        msg = f'User "{user.name}" cannot {a.verb} path "{a.path}"'
    elif a.namespace:
        msg = f'User "{user.name}" cannot {a.verb} resource "{a.full_resource}" in API group "{a.group}" ' \
              f'in the namespace "{a.namespace}"'
    else:
        msg = f'User "{user.name}" cannot {a.verb} resource "{a.full_resource}" in API group "{a.group}" ' \
              f'at the cluster scope'
    if reason:
        msg = f"{msg}: {reason}"
    details: dict[str, Any] = {}
    if not a.resource_request:
        message = f"forbidden: {msg}"
    else:
        qualified = f"{a.resource}.{a.group}" if a.group else a.resource
        message = f'{qualified} "{a.name}" is forbidden: {msg}' if a.name else f"{qualified} is forbidden: {msg}"
        if a.name:
            details["name"] = a.name
        if a.group:
            details["group"] = a.group
        details["kind"] = a.resource
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": "Forbidden", "details": details, "code": 403}
    return json_response(403, body)


# ---------------------------------------------------------------------- the front door for non-admins
def impersonating(headers: Any) -> bool:
    return "impersonate-user" in headers or "impersonate-group" in headers or "impersonate-uid" in headers


def _impersonate(cluster: Cluster, user: UserInfo, req: Request) -> UserInfo | Response:
    """kube-apiserver's impersonation filter: the requester must be allowed to `impersonate` each part."""
    h = req.headers
    target = h.get("impersonate-user", "")
    if not target:
        raise ApiError(500, "InternalError",
                       "Internal error occurred: requested [{Kind:Group ...}] without impersonating a user")
    groups = [g.strip() for g in h.get("impersonate-group", "").split(",") if g.strip()]
    checks: list[Attributes] = []
    if target.startswith("system:serviceaccount:") and target.count(":") == 3:
        _, _, sa_ns, sa_name = target.split(":")
        checks.append(Attributes("impersonate", True, resource="serviceaccounts", name=sa_name, namespace=sa_ns))
        user_groups = ["system:serviceaccounts", f"system:serviceaccounts:{sa_ns}"]
    else:
        checks.append(Attributes("impersonate", True, resource="users", name=target))
        user_groups = []
    for g in groups:
        checks.append(Attributes("impersonate", True, resource="groups", name=g))
    if h.get("impersonate-uid"):
        checks.append(Attributes("impersonate", True, group="authentication.k8s.io", resource="uids",
                                 name=h["impersonate-uid"]))
    for c in checks:
        ok, reason = authorize(cluster, user, c)
        if not ok:
            return forbidden(user, c, reason)
    all_groups = user_groups + [g for g in groups if g not in user_groups]
    if target != "system:anonymous" and AUTHENTICATED not in all_groups:
        all_groups.append(AUTHENTICATED)
    return UserInfo(target, tuple(all_groups), h.get("impersonate-uid", ""))


def serve(cluster: Cluster, user: UserInfo, req: Request) -> Response:
    """Authorize one request of an authenticated identity, then hand it to the API server."""
    try:
        if impersonating(req.headers):
            got = _impersonate(cluster, user, req)
            if isinstance(got, Response):
                return got
            user = got
        req.user = user
        if not user.is_master:
            a = attributes(req.method, req.path, req.query)
            ok, reason = authorize(cluster, user, a)
            if not ok:
                return forbidden(user, a, reason)
    except ApiError as e:
        return json_response(e.code, e.status(), e.headers)
    return cluster.api.handle(req)


# ---------------------------------------------------------------------- review APIs
def _review_attrs(spec: dict[str, Any], ns_default: str = "") -> Attributes:
    ra = spec.get("resourceAttributes")
    if isinstance(ra, dict):
        return Attributes(str(ra.get("verb") or ""), True, group=str(ra.get("group") or ""),
                          version=str(ra.get("version") or ""), resource=str(ra.get("resource") or ""),
                          subresource=str(ra.get("subresource") or ""), name=str(ra.get("name") or ""),
                          namespace=str(ra.get("namespace") or ns_default))
    nra = spec.get("nonResourceAttributes") or {}
    return Attributes(str(nra.get("verb") or ""), False, path=str(nra.get("path") or ""))


def _decision(cluster: Cluster, user: UserInfo, a: Attributes) -> dict[str, Any]:
    ok, reason = authorize(cluster, user, a)
    status: dict[str, Any] = {"allowed": ok}
    if reason:
        status["reason"] = reason
    return status


def _body(req: Request) -> dict[str, Any]:
    if req.body.startswith(b"k8s\x00"):
        from .protobuf import decode

        obj: Any = decode(req.body)
    else:
        try:
            obj = json.loads(req.body or b"{}")
        except ValueError:
            raise errors.bad_request("error decoding request body") from None
    if not isinstance(obj, dict):
        raise errors.bad_request("the body of the request must be a JSON object")
    return obj


def review(cluster: Cluster, req: Request, rt: ResourceType, version: str, ns: str | None) -> Response:
    """POST to one of the review resources (nothing is stored)."""
    if req.method != "POST":
        raise errors.method_not_allowed()
    user: UserInfo = req.user or admin_user(cluster)
    obj = _body(req)
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    api_version = f"{rt.group}/{version}"
    out: dict[str, Any] = {"kind": rt.kind, "apiVersion": api_version,
                           "metadata": {**(obj.get("metadata") or {}), "creationTimestamp": None}, "spec": spec}
    kind = rt.kind
    if kind == "SelfSubjectAccessReview":
        a = _review_attrs(spec)
        if not a.verb:
            raise errors.invalid(kind, rt.group, "", [("FieldValueRequired", "spec.resourceAttributes.verb",
                                                       "Required value")]) if a.resource_request else \
                errors.invalid(kind, rt.group, "", [("FieldValueInvalid", "spec.resourceAttributes",
                                                     "Invalid value: \"null\": exactly one of nonResourceAttributes "
                                                     "or resourceAttributes must be specified")])
        out["status"] = _decision(cluster, user, a)
    elif kind in ("SubjectAccessReview", "LocalSubjectAccessReview"):
        a = _review_attrs(spec)
        if kind == "LocalSubjectAccessReview" and a.namespace != (ns or ""):
            raise errors.bad_request(f"spec.resourceAttributes.namespace must match namespace: {ns}")
        groups = spec.get("groups") if version == "v1" else spec.get("group")
        subject = UserInfo(str(spec.get("user") or ""), tuple(groups or ()), str(spec.get("uid") or ""))
        if not subject.name and not subject.groups:
            raise errors.invalid(kind, rt.group, "", [("FieldValueRequired", "spec.user",
                                                       "Required value: at least one of user or group must be specified")])
        out["status"] = _decision(cluster, subject, a)
    elif kind == "SelfSubjectRulesReview":
        res, nonres, err = rules_for(cluster, user, str(spec.get("namespace") or ""))
        out["status"] = {"resourceRules": res, "nonResourceRules": nonres, "incomplete": bool(err)}
        if err:
            out["status"]["evaluationError"] = err
    elif kind == "SelfSubjectReview":
        out.pop("spec")
        out["status"] = {"userInfo": user.to_json()}
    elif kind == "TokenReview":
        who = authenticate_token(cluster, str(spec.get("token") or ""))
        out["status"] = {"authenticated": True, "user": who.to_json(), "audiences": ["https://kubernetes.default.svc"]} \
            if who else {"user": {}, "error": "invalid bearer token"}
    else:
        raise errors.method_not_allowed()
    return json_response(201, out)


# ---------------------------------------------------------------------- defaults every cluster starts with
def _bootstrap(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].setdefault("labels", {})["kubernetes.io/bootstrapping"] = "rbac-defaults"
    obj["metadata"]["annotations"] = {"rbac.authorization.kubernetes.io/autoupdate": "true"}
    return obj


def default_rbac(minor: int) -> list[dict[str, Any]]:
    """system:discovery, system:public-info-viewer and system:basic-user, bound to system:authenticated."""
    discovery = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
                 "/version", "/version/"]
    basic = [{"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews",
                                                                   "selfsubjectrulesreviews"], "verbs": ["create"]}]
    if minor >= 27:
        basic.insert(0, {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"],
                         "verbs": ["create"]})
    roles = {
        "system:discovery": [{"nonResourceURLs": discovery, "verbs": ["get"]}],
        "system:public-info-viewer": [{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                                       "verbs": ["get"]}],
        "system:basic-user": basic,
    }
    out: list[dict[str, Any]] = []
    for name, rules in roles.items():
        out.append(_bootstrap({"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": {"name": name},
                               "rules": rules}))
        subjects = [{"apiGroup": RBAC, "kind": "Group", "name": AUTHENTICATED}]
        if name == "system:public-info-viewer":
            subjects.append({"apiGroup": RBAC, "kind": "Group", "name": "system:unauthenticated"})
        out.append(_bootstrap({"apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
                               "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
                               "subjects": subjects}))
    return out
