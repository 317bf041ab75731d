"""The portal's only way to a cluster: the official Kubernetes client, with errors put in words."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.kube_config import KubeConfigLoader

from portal.api import yaml as api_yaml

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 20.0


class KubeconfigError(ValueError):
    """The kubeconfig itself is wrong: not YAML, no context, no server, expired certificate."""


class ClusterError(Exception):
    """The cluster could not be used; ``reason`` says why in words, ``unreachable`` if it never answered."""

    def __init__(self, reason: str, *, unreachable: bool = False, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable
        self.status = status


MAX_KUBECONFIG_CHARS = 256 * 1024
MAX_KUBECONFIG_DEPTH = 20
MAX_SERVER_URL = 300  # Cluster.api_server's length

# Fields that make the client read a file from the portal's own disk, and what to send instead.
USER_FILE_FIELDS = {"tokenFile": "token", "client-certificate": "client-certificate-data",
                    "client-key": "client-key-data"}
CLUSTER_FILE_FIELDS = {"certificate-authority": "certificate-authority-data"}


def _load_yaml(text: str) -> Any:
    """The document within size and depth limits; errors name the line."""
    if not isinstance(text, str):
        raise KubeconfigError("The kubeconfig must be text (YAML).")
    if len(text) > MAX_KUBECONFIG_CHARS:
        raise KubeconfigError(f"The kubeconfig is {len(text) // 1024} KiB; at most {MAX_KUBECONFIG_CHARS // 1024} KiB "
                              "is accepted.")
    try:
        return api_yaml.safe_load(text, max_depth=MAX_KUBECONFIG_DEPTH, max_nodes=20_000)
    except (yaml.YAMLError, ValueError) as exc:
        line, problem = api_yaml.describe_error(exc)
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {line}, column {mark.column + 1}" if mark is not None else ""
        raise KubeconfigError(f"The kubeconfig is not valid YAML{where}: {problem}") from None


def _entries(doc: dict[str, Any], key: str, inner: str) -> dict[str, dict[str, Any]]:
    """``clusters``/``users``/``contexts`` as {name: inner mapping}, with every type checked."""
    items = doc.get(key)
    if not isinstance(items, list) or not items:
        raise KubeconfigError(f"The kubeconfig has no {key}." if items in (None, [], "") else
                              f"The kubeconfig's {key} must be a list of entries with a name and a {inner}.")
    out: dict[str, dict[str, Any]] = {}
    for position, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise KubeconfigError(f"Entry {position} of the kubeconfig's {key} must be a mapping with a name and a "
                                  f"{inner}.")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise KubeconfigError(f"Entry {position} of the kubeconfig's {key} has no name (a text).")
        if name in out:
            raise KubeconfigError(f"The kubeconfig's {key} has two entries named {name!r}.")
        value = item.get(inner)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise KubeconfigError(f"The {inner} of {key[:-1]} {name!r} in the kubeconfig must be a mapping, "
                                  f"not {_kind(value)}.")
        out[name] = value
    return out


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a text", bool: "true/false", int: "a number",
            float: "a number", type(None): "empty"}.get(type(value), type(value).__name__)


def _text(entry: dict[str, Any], field: str, where: str) -> str | None:
    value = entry.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise KubeconfigError(f"{where} has {field} that is {_kind(value)}; it must be a text.")
    return value


def _base64(entry: dict[str, Any], field: str, where: str) -> bytes | None:
    value = _text(entry, field, where)
    if value is None:
        return None
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise KubeconfigError(f"{where} has {field} that is not valid base64.") from None


def _check_cluster(name: str, cluster: dict[str, Any], allow_insecure: bool) -> None:
    where = f"Cluster {name!r} in the kubeconfig"
    for field, inline in CLUSTER_FILE_FIELDS.items():
        if field in cluster:
            raise KubeconfigError(f"{where} refers to a file with {field}: Corral reads no files from its own disk; "
                                  f"paste the certificate itself, base64-encoded, as {inline}.")
    server = _text(cluster, "server", where)
    if server is not None:
        _check_url(server, f"{where} has a server", required=True)
    proxy = _text(cluster, "proxy-url", where)
    if proxy is not None:
        _check_url(proxy, f"{where} has a proxy-url", required=False)
    _text(cluster, "tls-server-name", where)
    ca = _base64(cluster, "certificate-authority-data", where)
    if ca is not None:
        try:
            x509.load_pem_x509_certificates(ca)
        except Exception:  # noqa: BLE001 - any parse failure means the same to the operator
            raise KubeconfigError(f"{where} has certificate-authority-data that is not a PEM certificate.") from None
    insecure = cluster.get("insecure-skip-tls-verify")
    if insecure is not None and not isinstance(insecure, bool):
        raise KubeconfigError(f"{where} has insecure-skip-tls-verify that is {_kind(insecure)}; it must be true or "
                              "false.")
    if insecure and not allow_insecure:
        raise KubeconfigError(f"{where} sets insecure-skip-tls-verify: the server's certificate would not be checked, "
                              "so anyone on the way could read the credentials. Add the cluster's CA as "
                              "certificate-authority-data, or have an admin import it with TLS verification "
                              "explicitly skipped.")


def _check_url(value: str, what: str, *, required: bool) -> None:
    problem = ""
    if len(value) > MAX_SERVER_URL:
        problem = f"longer than {MAX_SERVER_URL} characters"
    elif any(c.isspace() or not c.isprintable() for c in value):
        problem = "with spaces or control characters"
    else:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
            problem = "that is not an https:// or http:// URL"
    if problem:
        raise KubeconfigError(f"{what} {problem}: {value[:80]!r}.")


def _check_user(name: str, user: dict[str, Any]) -> None:
    where = f"User {name!r} in the kubeconfig"
    if "exec" in user or "auth-provider" in user:
        raise KubeconfigError(f"{where} runs a credential plugin (exec/auth-provider), which is not supported; "
                              "use a service-account token or a client certificate.")
    for field, inline in USER_FILE_FIELDS.items():
        if field in user:
            raise KubeconfigError(f"{where} refers to a file with {field}: Corral reads no files from its own disk; "
                                  f"put the {'token' if field == 'tokenFile' else 'PEM data, base64-encoded,'} "
                                  f"inline as {inline}.")
    for field in ("token", "username", "password"):
        _text(user, field, where)
    cert_data = _base64(user, "client-certificate-data", where)
    key_data = _base64(user, "client-key-data", where)
    if (cert_data is None) != (key_data is None):
        missing = "client-key-data" if key_data is None else "client-certificate-data"
        raise KubeconfigError(f"{where} has a client certificate or key without the other: add {missing}.")
    if cert_data is not None:
        try:
            cert = x509.load_pem_x509_certificate(cert_data)
        except Exception:  # noqa: BLE001
            raise KubeconfigError(f"{where} has client-certificate-data that is not a PEM certificate.") from None
        if cert.not_valid_after_utc < dt.datetime.now(dt.UTC):
            raise KubeconfigError(
                f"The client certificate of user {name!r} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC."
            )
        try:
            serialization.load_pem_private_key(key_data, password=None, unsafe_skip_rsa_key_validation=True)
        except TypeError:
            raise KubeconfigError(f"{where} has a client key protected by a password, which cannot be used.") from None
        except Exception:  # noqa: BLE001
            raise KubeconfigError(f"{where} has client-key-data that is not a PEM private key.") from None


def parse_kubeconfig(text: str, allow_insecure: bool = False) -> dict[str, Any]:
    """Parse and check a kubeconfig before anything is contacted, naming the problem and where it is.

    Only inline credentials and certificates are accepted: a file reference would make the portal read its
    own disk and send what it read to a server of the importer's choosing. Every field is type-checked, so
    a hostile kubeconfig ends in a KubeconfigError, never in another exception. ``insecure-skip-tls-verify``
    is refused unless ``allow_insecure`` (an admin's audited decision).
    """
    doc = _load_yaml(text)
    if not isinstance(doc, dict):
        raise KubeconfigError("The kubeconfig must be a YAML mapping with clusters, users and contexts.")
    clusters = _entries(doc, "clusters", "cluster")
    users = _entries(doc, "users", "user")
    contexts = _entries(doc, "contexts", "context")
    for name, cluster in clusters.items():
        _check_cluster(name, cluster, allow_insecure)
    for name, user in users.items():
        _check_user(name, user)
    current = doc.get("current-context")
    if current is not None and not isinstance(current, str):
        raise KubeconfigError(f"The kubeconfig's current-context must be the name of a context, not {_kind(current)}.")
    current = current or next(iter(contexts))
    if current not in contexts:
        raise KubeconfigError(f"The kubeconfig's current-context {current!r} is not among its contexts.")
    context = contexts[current]
    cluster_name, user_name = context.get("cluster"), context.get("user")
    for field, value in (("cluster", cluster_name), ("user", user_name)):
        if not isinstance(value, str):
            raise KubeconfigError(f"Context {current!r} in the kubeconfig must name a {field} (a text), "
                                  f"not {_kind(value)}.")
    _text(context, "namespace", f"Context {current!r} in the kubeconfig")
    if cluster_name not in clusters:
        raise KubeconfigError(f"Context {current!r} names cluster {cluster_name!r}, which the kubeconfig lacks.")
    if not clusters[cluster_name].get("server"):
        raise KubeconfigError(f"Cluster {cluster_name!r} in the kubeconfig has no server URL.")
    user = users.get(user_name)
    if user is None:
        raise KubeconfigError(f"Context {current!r} names user {user_name!r}, which the kubeconfig lacks.")
    if not any(user.get(k) for k in ("token", "client-certificate-data", "username")):
        raise KubeconfigError(f"User {user_name!r} in the kubeconfig has no credentials.")
    if user.get("username") and not isinstance(user.get("password"), str):
        raise KubeconfigError(f"User {user_name!r} in the kubeconfig has a username but no password.")
    doc["current-context"] = current
    return doc


def insecure_of(doc: dict[str, Any]) -> bool:
    """Whether the cluster in use skips TLS verification (allowed only for an admin's import)."""
    return bool(_current_cluster(doc).get("insecure-skip-tls-verify"))


def _current_cluster(doc: dict[str, Any]) -> dict[str, Any]:
    contexts = {c["name"]: c.get("context") or {} for c in doc["contexts"]}
    cluster_name = contexts[doc["current-context"]]["cluster"]
    return next(c.get("cluster") or {} for c in doc["clusters"] if c["name"] == cluster_name)


def server_of(doc: dict[str, Any]) -> str:
    return _current_cluster(doc)["server"]


def api_client(kubeconfig: str | dict[str, Any], *, allow_insecure: bool = False) -> k8s.ApiClient:
    """A client for the kubeconfig's current context; a text is checked first (see parse_kubeconfig)."""
    doc = parse_kubeconfig(kubeconfig, allow_insecure) if isinstance(kubeconfig, str) else kubeconfig
    configuration = k8s.Configuration()
    try:
        KubeConfigLoader(config_dict=doc, active_context=doc.get("current-context")).load_and_set(configuration)
    except ConfigException as exc:
        raise KubeconfigError(f"The kubeconfig cannot be used: {exc}") from None
    configuration.retries = urllib3.Retry(total=0, connect=0, read=0, redirect=0)
    return k8s.ApiClient(configuration)


IMPORT_NEEDS = "Corral needs to read /version and to list nodes to import and watch a cluster"


def explain(exc: BaseException, server: str = "", doing: str = "") -> ClusterError:
    """Turn a client exception into a ClusterError with a sentence an operator can act on.

    ``doing`` names the step that failed ("list nodes"), so a 403 says which permission is missing.
    """
    where = f" at {server}" if server else ""
    if isinstance(exc, ClusterError):
        return exc
    if isinstance(exc, ApiException):
        status = exc.status or 0
        message = ""
        try:
            message = json.loads(exc.body or "{}").get("message", "")
        except (ValueError, TypeError, AttributeError):
            message = (exc.body or b"")[:200] if isinstance(exc.body, str) else ""
        if status == 401:
            return ClusterError(f"The cluster{where} refused the credentials (401 Unauthorized): the token or "
                                "certificate is wrong, expired or revoked.", status=401)
        if status == 403 and doing:
            return ClusterError(f"The credentials are valid but may not {doing} (403 Forbidden); {IMPORT_NEEDS}. "
                                f"The API server{where} said: {message}", status=403)
        if status == 403:
            return ClusterError(f"The credentials are valid but not allowed to do this (403 Forbidden): {message}",
                                status=403)
        if status in (502, 503, 504):
            return ClusterError(f"The API server{where} is unavailable ({status}): {message or exc.reason}",
                                unreachable=True, status=status)
        return ClusterError(f"The API server{where} answered {status} {exc.reason}: {message}".rstrip(": "),
                            status=status)
    text = str(exc)
    cause = exc
    while getattr(cause, "__context__", None) is not None and cause.__context__ is not cause:
        cause = cause.__context__
        if isinstance(cause, (ssl.SSLError, ConnectionRefusedError, socket.timeout, socket.gaierror)):
            break
    if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        return ClusterError(f"The API server{where} presented a certificate the kubeconfig's CA does not trust.",
                            unreachable=True)
    if isinstance(cause, ConnectionRefusedError) or "Connection refused" in text:
        return ClusterError(f"Nothing is listening at {server or 'the API server'}: connection refused.",
                            unreachable=True)
    if isinstance(cause, socket.gaierror) or "Name or service not known" in text or "NameResolution" in text:
        return ClusterError(f"The API server's host name{where} cannot be resolved.", unreachable=True)
    if "RemoteDisconnected" in text or "Connection aborted" in text or "Connection reset" in text:
        return ClusterError(f"The API server{where} closed the connection without answering.", unreachable=True)
    if "timed out" in text.lower() or isinstance(cause, (socket.timeout, TimeoutError)):
        return ClusterError(f"The API server{where} did not answer in time.", unreachable=True)
    return ClusterError(f"The API server{where} could not be reached: {text[:300]}", unreachable=True)


@dataclass
class ClusterView:
    """What one look at a cluster tells: its version, its kind, and its nodes (raw JSON)."""

    git_version: str
    kind: str
    server: str
    nodes: list[dict[str, Any]]
    insecure_tls: bool = False  # reached without checking the server's certificate (an admin's decision)


RKE_ROLE_VALUES = {"etcd", "controlplane", "worker"}


def node_roles(node: dict[str, Any]) -> list[str]:
    labels = (node.get("metadata") or {}).get("labels") or {}
    roles = set()
    for key in labels:
        if key.startswith("node-role.kubernetes.io/"):
            role = key.split("/", 1)[1]
            roles.add({"master": "controlplane", "control-plane": "controlplane"}.get(role, role))
    return sorted(roles) or ["worker"]


def detect_kind(git_version: str, nodes: list[dict[str, Any]]) -> str:
    if "+k3s" in git_version:
        return "k3s"
    for node in nodes:
        meta = node.get("metadata") or {}
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        if any(k.startswith("rke.cattle.io/") for k in annotations) or any(
            labels.get(f"node-role.kubernetes.io/{r}") == "true" for r in RKE_ROLE_VALUES
        ):
            return "rke"
    return "imported"


MAX_VERSION_CHARS = 64  # Cluster.kubernetes_version's length


def look(kubeconfig: str | dict[str, Any], *, allow_insecure: bool = False,
         timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT)) -> ClusterView:
    """Read a cluster's version and nodes. Raises KubeconfigError or ClusterError."""
    doc = parse_kubeconfig(kubeconfig, allow_insecure) if isinstance(kubeconfig, str) else kubeconfig
    server = server_of(doc)
    api = api_client(doc)
    doing = "read the server's version (/version)"
    try:
        version = k8s.VersionApi(api).get_code(_request_timeout=timeout)
        doing = "list nodes"
        raw = k8s.CoreV1Api(api).list_node(_preload_content=False, _request_timeout=timeout)
        nodes = json.loads(raw.data).get("items") or []
    except Exception as exc:  # noqa: BLE001 - every failure becomes a reason in words
        raise explain(exc, server, doing) from None
    finally:
        api.close()
    git_version = version.git_version
    # The server is the importer's choice: what it answers is checked like any other input.
    if not isinstance(git_version, str) or not git_version or len(git_version) > MAX_VERSION_CHARS:
        raise ClusterError(f"The API server at {server} did not report a Kubernetes version.")
    if not isinstance(nodes, list) or not all(_is_node(n) for n in nodes):
        raise ClusterError(f"The API server at {server} answered a node list that is not Kubernetes' own.")
    return ClusterView(git_version=git_version, kind=detect_kind(git_version, nodes),
                       server=server, nodes=nodes, insecure_tls=insecure_of(doc))


def _is_node(node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    meta = node.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not 0 < len(meta["name"]) <= 253:
        return False
    return all(isinstance(node.get(k) or {}, dict) for k in ("spec", "status")) and all(
        isinstance(meta.get(k) or {}, dict) for k in ("labels", "annotations"))
