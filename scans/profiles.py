"""The built-in profiles of ``scans/benchmarks/profiles.yaml``, kept in the database after every migrate."""
from __future__ import annotations


def sync_builtin_profiles(**kwargs) -> None:
    from scans import benchmarks
    from scans.models import ScanProfile

    for raw in benchmarks.builtin_profiles():
        ScanProfile.objects.update_or_create(
            name=raw["name"],
            defaults={"benchmark": raw["benchmark"], "description": raw.get("description", ""),
                      "skips": {str(k): str(v) for k, v in (raw.get("skips") or {}).items()}, "builtin": True})
