"""The privacy portal, ``/portal`` (issue 7): plain HTML pages (Jinja2, a little JS, no
build step) where a person sees what is held about them and exercises their rights, and
an administrator's console. ``create_portal`` builds it; ``api.main`` mounts it."""

from __future__ import annotations

from api.portal.app import create_portal

__all__ = ["create_portal"]
