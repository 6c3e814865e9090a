"""Prometheus metrics at ``GET /metrics`` (text exposition format 0.0.4, written by hand).

Counts and positions only: no label ever carries personal data (no addresses, no subject,
account or message ids); the only labels are projection names and the version.

Like ``/health`` it needs no token, and it is served on the ``http`` listener, which binds
to loopback by default. Operators must not expose ``/metrics`` publicly: scrape it locally
or through a reverse proxy that restricts who may read it.
"""

from __future__ import annotations

from fastapi import FastAPI, Response

from adapters import bootstrap

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
VERSION = "0.1.0"


def _label(value: str) -> str:
    """A label value escaped as the exposition format requires."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(name: str, kind: str, help_text: str, samples: list[tuple[str, int]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines.extend(f"{name}{labels} {value}" for labels, value in samples)
    return lines


def render(store: bootstrap.Container) -> str:
    """The metrics page for ``store``, one family after another, ending in a newline."""
    log_position = store.app.recorder.max_notification_id() or 0
    positions = sorted(store.projections.positions().items())
    lines: list[str] = []
    lines += _family("ledgermail_events_total", "counter",
                     "Events recorded in the event log (its highest notification id).",
                     [("", log_position)])
    lines += _family("ledgermail_projection_position", "gauge",
                     "The last event log position each projection has processed.",
                     [(f'{{projection="{_label(name)}"}}', pos) for name, pos in positions])
    lines += _family("ledgermail_projection_lag", "gauge",
                     "Events each projection has yet to process.",
                     [(f'{{projection="{_label(name)}"}}', max(0, log_position - pos))
                      for name, pos in positions])
    lines += _family("ledgermail_outbound_queue_size", "gauge",
                     "Outbound messages waiting for delivery.",
                     [("", store.mailbox_view.queue_size())])
    lines += _family("ledgermail_accounts", "gauge", "Mail accounts.",
                     [("", len(store.mailbox_view.accounts()))])
    lines += _family("ledgermail_build_info", "gauge", "The running ledgermail version.",
                     [(f'{{version="{VERSION}"}}', 1)])
    return "\n".join(lines) + "\n"


def add_metrics_route(app: FastAPI, store: bootstrap.Container) -> None:
    """``GET /metrics``: unauthenticated, like ``/health`` (see the module docstring)."""

    @app.get("/metrics", response_class=Response, include_in_schema=False)
    def metrics() -> Response:
        return Response(content=render(store), media_type=CONTENT_TYPE)
