"""Node transitions: stored with their time, mirrored as job log lines, written in bulk.

An upgrade of 100 nodes makes hundreds of transitions; they are collected while a batch
advances and written in one transaction per look at the cluster, so recording never
slows the upgrade down.
"""
from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from clusters.models import NodeTransition, NodeUpgrade, Upgrade
from portal.crypto import redact
from portal.models import JobLogLine

logger = logging.getLogger("corral.clusters")

S = NodeUpgrade.State
LABELS = {S.PENDING: "Active", S.ACTIVE: "Active"}
IN_FLIGHT = {S.UPGRADING, S.UPGRADED}
HOLDING = {S.CORDONED, S.DRAINING, S.DRAINED}
STATE_WEIGHT = {S.PENDING: 0.0, S.CORDONED: 0.1, S.DRAINING: 0.15, S.DRAINED: 0.3, S.UPGRADING: 0.35,
                S.UPGRADED: 0.9, S.ACTIVE: 1.0, S.FAILED: 0.35}


def label(state: str) -> str:
    return LABELS.get(state) or S(state).label


class Recorder:
    """Collects state changes of NodeUpgrade rows and writes them together."""

    def __init__(self, upgrade: Upgrade, job_id=None):
        self.upgrade = upgrade
        self.job_id = job_id
        self._transitions: list[NodeTransition] = []
        self._lines: list[JobLogLine] = []
        self._dirty: dict[int, NodeUpgrade] = {}

    def move(self, row: NodeUpgrade, to_state: str, message: str = "") -> None:
        now = timezone.now()
        before = row.state
        self._transitions.append(NodeTransition(node_upgrade=row, from_state=before, to_state=to_state, at=now,
                                                message=message))
        row.state = to_state
        row.message = message
        if before == S.PENDING and to_state != S.PENDING and row.started_at is None:
            row.started_at = now
        if to_state == S.ACTIVE:
            row.finished_at = now
        elif to_state == S.PENDING:
            row.started_at = row.finished_at = None
        self._dirty[row.pk] = row
        text = f"{row.role} node {row.node_name}: {label(before)} → {label(to_state)}" + (f" ({message})" if message else "")
        self.log(text, "error" if to_state == S.FAILED else "info", at=now)

    def note(self, row: NodeUpgrade, message: str) -> None:
        """Change a row's message without a transition."""
        row.message = message
        self._dirty[row.pk] = row

    def log(self, message: str, level: str = "info", at=None) -> None:
        message = redact(message)
        logger.log(logging.getLevelName(level.upper()), "[upgrade %s] %s", self.upgrade.pk, message)
        if self.job_id is not None:
            self._lines.append(JobLogLine(job_id=self.job_id, level=level, message=message, at=at or timezone.now()))

    def flush(self) -> None:
        if not (self._transitions or self._lines or self._dirty):
            return
        with transaction.atomic():
            if self._dirty:
                NodeUpgrade.objects.bulk_update(list(self._dirty.values()),
                                                ["state", "message", "started_at", "finished_at", "cordoned_before"])
            if self._transitions:
                NodeTransition.objects.bulk_create(self._transitions)
            if self._lines:
                JobLogLine.objects.bulk_create(self._lines)
        self._transitions, self._lines, self._dirty = [], [], {}


def percent(rows: list[NodeUpgrade]) -> int:
    if not rows:
        return 0
    return int(100 * sum(STATE_WEIGHT.get(r.state, 0) for r in rows) / len(rows))
