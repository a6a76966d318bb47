"""The web page to watch livewatch: a read-only JSON API over a queryable sink, one page of plain
HTML/CSS/JS (package data, no build step) and live updates by server-sent events.

`create_app` builds the aiohttp sub-app; the daemon mounts it on its health listener under
``/ui`` and ``livewatch ui`` serves it alone. `security` holds the token and path rules.
"""
from .app import create_app, mount
from .security import check_exposure, token_from_env

__all__ = ["create_app", "mount", "check_exposure", "token_from_env"]
