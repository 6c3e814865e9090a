"""The HTTP application: health, one-click unsubscribe, the compliance API (``/api/v1``,
docs at ``/docs``) and the privacy portal (``/portal``)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Response

from adapters import bootstrap
from api.erasure import build_erasure_router
from api.exports import build_exports_router
from api.metrics import add_metrics_route
from api.portal import create_portal
from api.rectification import build_rectification_router
from api.retention import build_retention_router
from api.subjects import build_subjects_router
from api.unsubscribe import add_unsubscribe_routes
from api.v1 import build_router


def create_app(container: bootstrap.Container | None = None) -> FastAPI:
    """Build the app around the running store (``serve`` sets it)."""
    store = container or bootstrap.current()
    app = FastAPI(title="ledgermail", version="0.1.0", docs_url="/docs", redoc_url=None)

    @app.get("/health")
    def health(response: Response) -> dict[str, Any]:
        """Liveness and how far each projection has caught up with the event log."""
        log_position = store.app.recorder.max_notification_id() or 0
        positions = store.projections.positions()
        ok = store.projections.last_error is None
        if not ok:
            response.status_code = 503
        return {
            "status": "ok" if ok else "degraded",
            "store": "postgresql" if store.settings.is_postgres else "sqlite",
            "events": log_position,
            "projections": {name: {"position": pos, "lag": max(0, log_position - pos)}
                            for name, pos in positions.items()},
            "projections_leader": store.projections.is_leading,
            "projection_restarts": store.projections.restarts,
            "error": store.projections.last_error,
        }

    add_metrics_route(app, store)  # Prometheus /metrics, unauthenticated like /health
    add_unsubscribe_routes(app, store)  # RFC 8058 one-click unsubscribe
    app.include_router(build_router(store))  # the compliance API, /api/v1
    app.include_router(build_erasure_router(store))  # erasure and legal holds, /api/v1
    app.include_router(build_retention_router(store))  # retention policies, /api/v1
    app.include_router(build_subjects_router(store))  # subjects and consent, /api/v1/subjects
    app.include_router(build_exports_router(store))  # access requests (export), /api/v1/exports
    app.include_router(build_rectification_router(store))  # rectification (Art. 16)
    app.mount("/portal", create_portal(store))  # the privacy portal (HTML pages)
    return app
