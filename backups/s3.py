"""Corral's own reads of a backup target: manifests for rediscovery and checks, resource archives.

The etcd archives themselves are written and read on the nodes by the image; Corral reads the small
manifests (to list a bucket's snapshots for a cluster whose portal records were lost) and keeps
resource backups of imported clusters there.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from backups.models import BackupTarget

MANIFEST_SUFFIX = ".manifest.json"


class TargetError(Exception):
    """The bucket cannot be used; the message says why in one line."""


def url(target: BackupTarget) -> str:
    return target.endpoint if "://" in target.endpoint else f"https://{target.endpoint}"


def key(target: BackupTarget, name: str) -> str:
    folder = target.folder.strip("/")
    return f"{folder}/{name}" if folder else name


class Bucket:
    """One target's bucket through boto3, errors turned into one-line reasons."""

    def __init__(self, target: BackupTarget):
        self.target = target
        self._ca_file = None
        verify: Any = True
        if target.endpoint_ca.strip():
            handle = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
            handle.write(target.endpoint_ca)
            handle.close()
            self._ca_file = verify = handle.name
        self.client = boto3.client(
            "s3", endpoint_url=url(target), region_name=target.region or "us-east-1",
            aws_access_key_id=target.access_key, aws_secret_access_key=target.secret_key, verify=verify,
            config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2}))

    def close(self) -> None:
        if self._ca_file:
            os.unlink(self._ca_file)
            self._ca_file = None

    def __enter__(self) -> Bucket:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _explain(self, exc: Exception, what: str) -> TargetError:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error") or {}
            code, message = error.get("Code", ""), error.get("Message", "")
            if code in ("NoSuchBucket",):
                return TargetError(f"bucket {self.target.bucket} does not exist at {url(self.target)}")
            if code in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "403"):
                return TargetError(f"{what}: the bucket refused the access key or secret key ({code}: {message})")
            return TargetError(f"{what}: {code} {message}".strip())
        return TargetError(f"{what}: {url(self.target)} cannot be reached ({exc})")

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.target.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise self._explain(exc, f"bucket {self.target.bucket}") from None

    def get(self, name: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.target.bucket, Key=key(self.target, name))["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError) and (exc.response.get("Error") or {}).get("Code") in ("NoSuchKey", "404"):
                raise TargetError(f"{name} is not in {self.target.location}") from None
            raise self._explain(exc, f"reading {name}") from None

    def put(self, name: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.target.bucket, Key=key(self.target, name), Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise self._explain(exc, f"writing {name}") from None

    def delete(self, name: str) -> None:
        try:
            self.client.delete_object(Bucket=self.target.bucket, Key=key(self.target, name))
        except (ClientError, BotoCoreError) as exc:
            raise self._explain(exc, f"deleting {name}") from None

    def manifests(self) -> list[dict[str, Any]]:
        """Every snapshot manifest in the target's folder (the snapshots a bucket alone can tell about)."""
        prefix = key(self.target, "")
        out = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.target.bucket, Prefix=prefix)
            keys = [o["Key"] for page in pages for o in page.get("Contents") or [] if o["Key"].endswith(MANIFEST_SUFFIX)]
        except (ClientError, BotoCoreError) as exc:
            raise self._explain(exc, f"listing {self.target.location}") from None
        for item in keys:
            try:
                body = self.client.get_object(Bucket=self.target.bucket, Key=item)["Body"].read()
                manifest = json.loads(body)
            except (ClientError, BotoCoreError, ValueError):
                continue
            if isinstance(manifest, dict) and manifest.get("name"):
                out.append(manifest)
        return out
