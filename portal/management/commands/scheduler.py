"""``manage.py scheduler portal.cron``: run the reaper and periodic enqueues, surviving Redis outages."""
from __future__ import annotations

import logging
from typing import Any

import django_rq
from django.core.management.base import BaseCommand, CommandParser

from portal.jobs.scheduler import Scheduler


class Command(BaseCommand):
    help = "Runs the job scheduler: the reaper of lost jobs and the periodic tasks of a cron config module"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("config_path", nargs="?", default="portal.cron", help="cron configuration module")
        parser.add_argument("--logging-level", "-l", default="INFO",
                            choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])

    def handle(self, *args: Any, **options: Any) -> None:
        level = getattr(logging, options["logging_level"])
        logging.getLogger("corral").setLevel(level)
        scheduler = Scheduler(connection=django_rq.get_connection("default"), logging_level=level)
        scheduler.load_config_from_file(options["config_path"])
        scheduler.start()
