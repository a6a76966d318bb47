"""``python -m livewatch.healthcheck``: exit 0 when the daemon's ``/livez`` answers 200, else 1.

The container image's ``HEALTHCHECK`` runs it. It finds the endpoint the way ``livewatch run``
does (``daemon.health_listen`` from ``./livewatch.toml`` and ``LIVEWATCH_…``), and asks it on
loopback when the daemon listens on every interface.
"""
from __future__ import annotations

import sys
import urllib.error
import urllib.request

WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def livez_url(listen: str) -> str:
    from .health import parse_listen

    host, port = parse_listen(listen)
    host = WILDCARDS.get(host, host)
    return f"http://[{host}]:{port}/livez" if ":" in host else f"http://{host}:{port}/livez"


def main(timeout: float = 4.0) -> int:
    from .errors import ConfigError
    from .settings import load_settings

    try:
        listen = load_settings(None).daemon.health_listen
    except ConfigError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if not listen:
        print("daemon.health_listen is off: nothing to check")
        return 0
    url = livez_url(listen)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status == 200:
                return 0
            print(f"unhealthy: {url} answered {response.status}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
