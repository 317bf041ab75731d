"""The portal's only way to a cluster: the official Kubernetes client, with errors put in words."""
from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import urllib3
import yaml
from cryptography import x509
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.kube_config import KubeConfigLoader

# libyaml's loader when present: a kubeconfig is parsed on every sync of every cluster.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

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


def parse_kubeconfig(text: str) -> dict[str, Any]:
    """Parse and sanity-check a kubeconfig, naming the problem and where it is."""
    try:
        try:
            doc = yaml.load(text, Loader=YAML_LOADER)  # noqa: S506 - a safe loader
        except yaml.YAMLError:
            doc = yaml.safe_load(text)  # again, for the pure-Python loader's more precise error position
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise KubeconfigError(f"The kubeconfig is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict):
        raise KubeconfigError("The kubeconfig must be a YAML mapping with clusters, users and contexts.")
    for key in ("clusters", "users", "contexts"):
        if not isinstance(doc.get(key), list) or not doc[key]:
            raise KubeconfigError(f"The kubeconfig has no {key}.")
    current = doc.get("current-context") or doc["contexts"][0].get("name")
    contexts = {c.get("name"): c.get("context") or {} for c in doc["contexts"]}
    if current not in contexts:
        raise KubeconfigError(f"The kubeconfig's current-context {current!r} is not among its contexts.")
    cluster_name, user_name = contexts[current].get("cluster"), contexts[current].get("user")
    clusters = {c.get("name"): c.get("cluster") or {} for c in doc["clusters"]}
    users = {u.get("name"): u.get("user") or {} for u in doc["users"]}
    if cluster_name not in clusters:
        raise KubeconfigError(f"Context {current!r} names cluster {cluster_name!r}, which the kubeconfig lacks.")
    if not clusters[cluster_name].get("server"):
        raise KubeconfigError(f"Cluster {cluster_name!r} in the kubeconfig has no server URL.")
    user = users.get(user_name)
    if user is None:
        raise KubeconfigError(f"Context {current!r} names user {user_name!r}, which the kubeconfig lacks.")
    if not any(user.get(k) for k in ("token", "client-certificate-data", "client-certificate", "username", "exec",
                                     "auth-provider", "tokenFile")):
        raise KubeconfigError(f"User {user_name!r} in the kubeconfig has no credentials.")
    if "exec" in user or "auth-provider" in user:
        raise KubeconfigError("Kubeconfigs that run a credential plugin (exec/auth-provider) are not supported; "
                              "use a service-account token or a client certificate.")
    cert_data = user.get("client-certificate-data")
    if cert_data:
        try:
            cert = x509.load_pem_x509_certificate(base64.b64decode(cert_data))
        except Exception:  # noqa: BLE001
            raise KubeconfigError(f"User {user_name!r} has client-certificate-data that is not a PEM certificate.") from None
        if cert.not_valid_after_utc < dt.datetime.now(dt.UTC):
            raise KubeconfigError(
                f"The client certificate of user {user_name!r} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC."
            )
    doc["current-context"] = current
    return doc


def server_of(doc: dict[str, Any]) -> str:
    contexts = {c["name"]: c.get("context") or {} for c in doc["contexts"]}
    cluster_name = contexts[doc["current-context"]]["cluster"]
    return next(c["cluster"]["server"] for c in doc["clusters"] if c["name"] == cluster_name)


def api_client(kubeconfig: str | dict[str, Any]) -> k8s.ApiClient:
    doc = parse_kubeconfig(kubeconfig) if isinstance(kubeconfig, str) else kubeconfig
    configuration = k8s.Configuration()
    try:
        KubeConfigLoader(config_dict=doc, active_context=doc.get("current-context")).load_and_set(configuration)
    except ConfigException as exc:
        raise KubeconfigError(f"The kubeconfig cannot be used: {exc}") from None
    configuration.retries = urllib3.Retry(total=0, connect=0, read=0, redirect=0)
    return k8s.ApiClient(configuration)


def explain(exc: BaseException, server: str = "") -> ClusterError:
    """Turn a client exception into a ClusterError with a sentence an operator can act on."""
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


def look(kubeconfig: str | dict[str, Any], *, timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT)) -> ClusterView:
    """Read a cluster's version and nodes. Raises KubeconfigError or ClusterError."""
    doc = parse_kubeconfig(kubeconfig) if isinstance(kubeconfig, str) else kubeconfig
    server = server_of(doc)
    api = api_client(doc)
    try:
        version = k8s.VersionApi(api).get_code(_request_timeout=timeout)
        raw = k8s.CoreV1Api(api).list_node(_preload_content=False, _request_timeout=timeout)
        nodes = json.loads(raw.data).get("items") or []
    except Exception as exc:  # noqa: BLE001 - every failure becomes a reason in words
        raise explain(exc, server) from None
    finally:
        api.close()
    return ClusterView(git_version=version.git_version, kind=detect_kind(version.git_version, nodes),
                       server=server, nodes=nodes)
