"""Cron lines of scan schedules (five fields, UTC), read with croniter (RQ's own cron dependency)."""
from __future__ import annotations

from datetime import datetime

from croniter import croniter


def parse(line: str) -> croniter:
    text = " ".join(str(line or "").split())
    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise ValueError(f"{line!r} is not a cron line of five fields (minute hour day month weekday), "
                         "e.g. '0 3 * * *' for 03:00 every day.")
    return croniter(text)


def next_after(line: str, after: datetime) -> datetime:
    return croniter(" ".join(line.split()), after).get_next(datetime)
