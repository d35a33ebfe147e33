"""What activities share during one experiment run."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from chaos.docker import Project


@dataclass
class Context:
    project: Project
    base_url: str
    tc_image: str
    configuration: dict[str, Any]
    # Bearer token of the /v1 probes (neuros.auth.admin_token); never in a report.
    api_token: str = field(default="", repr=False)
    saved: dict[str, Any] = field(default_factory=dict)
    # Wall-clock instants (epoch seconds) named by an activity's "mark".
    marks: dict[str, float] = field(default_factory=dict)
    # Per write key: the synthetic user and instant of an acknowledged reading.
    readings: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Per load key: the synthetic user and instant of every reading the load got a 201
    # for (a light-load probe with ``remember``), to be read back after the fault.
    acknowledged: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    # (alert, state) -> first epoch second it was seen.
    alerts_seen: dict[tuple[str, str], float] = field(default_factory=dict)
    # Alert -> the mark at which its expression already held (see prometheus-active-alerts).
    alerts_due: dict[str, str] = field(default_factory=dict)
    # (alert, instant) -> the label sets its rules' expressions matched at that instant.
    matched_at: dict[tuple[str, float], list[dict[str, str]]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def scope(self) -> dict[str, Any]:
        return {**self.configuration, "saved": self.saved, "marks": self.marks}

    def since(self, mark: str) -> float:
        return self.marks.get(mark, time.time())

    def saw_alert(self, alert: str, state: str, at: float) -> None:
        key = (alert, state)
        self.alerts_seen[key] = min(at, self.alerts_seen.get(key, at))
