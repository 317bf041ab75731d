"""`?dryRun=All` on every write verb.

The whole request runs as usual (defaulting, admission, validation, conflicts,
the controllers' hooks) with the store in dry mode for the requesting thread:
`Store.put` and `Store.remove` then compute the would-be object but keep
nothing, bump no revision and send no watch event.  As on kube-apiserver a
dry-run create answers without a resourceVersion, a dry-run update or delete
with the object's current one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from . import errors

if TYPE_CHECKING:
    from .apiserver import Request
    from .store import Store

WRITE_METHODS = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions", "DELETE": "DeleteOptions"}


def _body_dry_run(req: Request) -> list[str] | None:
    """dryRun inside a DeleteOptions body (DELETE) or an Eviction's deleteOptions."""
    if not req.body.strip() or not (req.method == "DELETE" or req.path.rstrip("/").endswith("/eviction")):
        return None
    try:
        body = json.loads(req.body)
    except ValueError:
        return None
    if isinstance(body, dict) and req.method == "POST":
        body = body.get("deleteOptions")
    got = body.get("dryRun") if isinstance(body, dict) else None
    return [str(v) for v in got] if isinstance(got, list) and got else None


def requested(req: Request) -> bool:
    """Whether a request asks for a dry run; an unknown value is the real server's 422
    (`ValidateDryRun`: field.NotSupported on the request's *Options kind)."""
    if req.method not in WRITE_METHODS:
        return False
    values = _body_dry_run(req)
    if "dryRun" in req.query:
        values = req.query["dryRun"].split(",") if req.query["dryRun"] else [""]
    if values is None:
        return False
    method = req.method
    bad = [v for v in values if v != "All"]
    if bad:
        shown = "[]string{" + ", ".join(f'"{v}"' for v in values) + "}"
        raise errors.invalid(WRITE_METHODS[method], "meta.k8s.io", "",
                             [("FieldValueNotSupported", "dryRun", f'Unsupported value: {shown}: supported values: "All"')])
    return True


@contextmanager
def active(store: Store) -> Iterator[None]:
    """Hold the store lock with writes of this thread made dry."""
    with store.lock:
        me = threading.get_ident()
        prev = store.dry_thread
        store.dry_thread = me
        try:
            yield
        finally:
            store.dry_thread = prev


def is_dry(store: Store) -> bool:
    return store.dry_thread is not None and store.dry_thread == threading.get_ident()
