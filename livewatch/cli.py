"""The `livewatch` command line. Plugins add commands through the `register_commands` hook."""
from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from . import __version__
from .errors import ConfigError, LivewatchError
from .logs import setup_logging

log = logging.getLogger("livewatch")

config_option = click.option(
    "--config", "-c", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="TOML config file (default: ./livewatch.toml if it exists).",
)


class LivewatchGroup(click.Group):
    """Turns livewatch's own errors into a one-line message and exit status 2 (config) or 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except LivewatchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=LivewatchGroup)
@click.version_option(__version__, prog_name="livewatch")
def cli():
    """livewatch: activity detection on live HLS video.

    Sources find new segments, a classifier labels the activity in each, and sinks store the
    detections. `livewatch run` is the daemon; the other commands inspect and help.
    """


@cli.command()
@config_option
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path),
              help="Watch this folder instead of the configured sources (with an installed source that "
                   "can read a folder: the built-in folder source, unless disabled).")
@click.option("--model", help="Model: a directory, a model.tar.gz, an s3:// URI or a GluonCV model-zoo name.")
@click.option("--workers", type=click.IntRange(min=1), help="Segments in classification at once (daemon.workers).")
@click.option("--once", is_flag=True, help="Process the segments already there, then exit (each "
              "source must be able to run once, as the folder source can).")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def run(config, folder, model, workers, once, log_level):
    """Run the daemon until SIGINT/SIGTERM (or, with --once, until the sources are done)."""
    from .capabilities import folder_source, one_shot
    from .daemon import Daemon
    from .plugins import registry
    from .settings import ComponentConfig, load_settings
    from .wiring import build

    daemon_overrides = {k: v for k, v in (("workers", workers), ("log_level", log_level)) if v}
    settings = load_settings(config)
    if folder:  # a source that can read a local folder, in place of the configured ones
        settings.sources = [folder_source(registry(), folder, settings.sources)]
    if model:  # --model keeps the configured classifier type and its other options
        classifier = settings.classifier.model_dump()
        settings.classifier = ComponentConfig(**{**classifier, "model": model})
    if daemon_overrides:
        settings.daemon = settings.daemon.model_copy(update=daemon_overrides)
    setup_logging(settings.daemon.log_level, settings.daemon.log_format)
    components = build(settings)
    if once:  # every source finishes once what exists now is done
        components.sources = one_shot(components.sources)
    daemon = Daemon(components.sources, components.classifier, components.sinks, settings.daemon,
                    ui=settings.ui)
    stats = asyncio.run(daemon.run())
    if once and stats.released:
        sys.exit(1)  # some segments failed transiently and are still to do


def _windows(value: str | None) -> str | int | None:
    if value is None or value in ("center", "cover"):
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise click.BadParameter(f'"center", "cover" or a number of windows >= 1, not {value!r}')


@cli.command()
@config_option
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", help="Model to use (default: the configured classifier's).")
@click.option("--format", "fmt", type=click.Choice(["auto", "json", "text"]), default="auto",
              help="Output format (auto: text in a terminal, JSON lines when piped).")
@click.option("--windows", callback=lambda ctx, param, value: _windows(value),
              help='Windows per file: "center" (one, GluonCV\'s test window), N (GluonCV\'s '
                   'num_segments=N) or "cover" (every frame in one; default: the configured '
                   "classifier's).")
def classify(config, files, model, fmt, windows):
    """Classify video files without starting the daemon: one detection per file.

    Exits 1 if any file could not be classified (its detection says why).
    """
    from .classify import classify_files

    setup_logging("WARNING")
    ok = asyncio.run(classify_files(config, list(files), model=model, fmt=fmt, windows=windows))
    sys.exit(0 if ok else 1)


@cli.command()
@click.option("--options", "show_options", is_flag=True, help="Also list each plugin's options.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(show_options, as_json):
    """List the installed sources, classifiers, sinks and i3d backends, and where each comes from."""
    from .plugins import registry
    from .plugin_docs import describe_options

    entries = sorted(registry().entries.values(), key=lambda e: (e.kind, e.name))
    if as_json:
        click.echo(json.dumps([
            {"kind": e.kind, "name": e.name, "plugin": e.plugin, "distribution": e.distribution,
             "summary": e.summary, "options": describe_options(e.cls.Options)}
            for e in entries
        ], indent=2))
        return
    for e in entries:
        click.echo(f"{e.kind:<10} {e.name:<12} {e.summary}")
        click.echo(f"{'':<23} from {e.plugin} ({e.distribution})")
        if missing := getattr(e.cls, "missing", lambda: None)():
            click.echo(f"{'':<23} not available: {missing}")
        if show_options:
            for opt in describe_options(e.cls.Options):
                default = "" if opt["required"] else f" = {opt['default']!r}"
                click.echo(f"{'':<25} {opt['name']}: {opt['type']}{default}  {opt['description']}")


@cli.command()
@config_option
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path),
              help="The store's file, read by an installed sink that can read one back, e.g. "
              "local (default: the first configured sink that can be queried).")
@click.option("--stream", help="Only this stream.")
@click.option("--since", help="Only detections at or after: an age like 10m, 2h, 1d, or an ISO time.")
@click.option("--until", help="Only detections before: an age or an ISO time.")
@click.option("--errors", is_flag=True, help="Only error detections.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="The newest N detections.")
@click.option("--format", "fmt", type=click.Choice(["auto", "json", "text"]), default="auto")
@click.option("--windows", "windows", is_flag=True,
              help="The window timeline instead: one line per window, absolute times where the "
                   "segment's program date-time is known (--since/--until/--limit apply to windows).")
def detections(config, db, stream, since, until, errors, limit, fmt, windows):
    """Show stored detections (or, with --windows, their windows), oldest first: from the first
    configured sink that can read back what it stored (the local store), or the file --db names."""
    from .capabilities import detection_store
    from .components import DetectionQuery
    from .output import format_window, formatter_for
    from .plugins import registry
    from .settings import load_settings

    configured = [] if db is not None else load_settings(config).sinks
    store = detection_store(registry(), configured, db)
    query = DetectionQuery(stream=stream, since=parse_time(since), until=parse_time(until),
                           errors_only=errors, limit=limit)
    if windows:
        as_text = fmt == "text" or (fmt == "auto" and sys.stdout.isatty())
        for row in asyncio.run(_read_closing(store, store.query_windows(query))):
            click.echo(format_window(row) if as_text else json.dumps(row))
        return
    formatter = formatter_for(fmt, sys.stdout)
    for detection in asyncio.run(_read_closing(store, store.query(query))):
        click.echo(formatter(detection))


@cli.command()
@config_option
@click.option("--store", type=click.Path(dir_okay=False, path_type=Path),
              help="The store's file, read by an installed sink that can read one back, e.g. "
              "local (default: the first configured sink that can be queried).")
@click.option("--dynamodb", "table", help="Read the results table TABLE instead (read-only; the usual "
              "AWS credentials, region and AWS_ENDPOINT_URL, or the configured dynamodb sink's).")
@click.option("--media", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="A folder stored segments may be played from (repeatable; default: the "
              "configured sources' folders).")
@click.option("--listen", default="127.0.0.1:8108", show_default=True, help="host:port to serve on.")
@click.option("--token", help="Required by the page on a non-loopback address (default: ui.token, "
              "else LIVEWATCH_UI_TOKEN).")
def ui(config, store, table, media, listen, token):
    """Serve the web page and its JSON API over a store, without a daemon (read-only)."""
    from .capabilities import detection_store, media_roots, table_store
    from .plugins import registry
    from .settings import load_settings
    from .ui import token_from_env
    from .ui.serve import serve

    setup_logging("INFO")
    settings = load_settings(config)
    if table:
        sink = table_store(registry(), table, settings.sinks)
    else:
        sink = detection_store(registry(), [] if store is not None else settings.sinks, store)
    token = token or token_from_env(settings.ui.token)
    try:
        asyncio.run(serve(sink, listen, token, started=lambda url: click.echo(f"serving {url}"),
                          media=list(media) or media_roots(settings)))
    except KeyboardInterrupt:
        pass


async def _read_closing(store, reading):
    """Await `reading`, then close `store` (a remote table's sink opened a client to read)."""
    try:
        return await reading
    finally:
        await store.close()


@cli.command()
@config_option
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path),
              help="The store's file (default: the first configured sink that can be queried).")
@click.option("--dynamodb", "table", help="Read the results table TABLE instead (the dynamodb sink "
              "keeps the fleet's events there; the usual AWS credentials, region and "
              "AWS_ENDPOINT_URL, or the configured dynamodb sink's).")
@click.option("--stream", help="Only this stream.")
@click.option("--label", help="Only events of this label.")
@click.option("--since", help="Only events still going at or after: an age like 1h, or an ISO time.")
@click.option("--until", help="Only events begun before: an age or an ISO time.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="The newest N events.")
@click.option("--format", "fmt", type=click.Choice(["auto", "json", "text"]), default="auto")
def events(config, db, table, stream, label, since, until, limit, fmt):
    """Show activity events (runs of windows with one label, [events] settings), oldest first:
    from the first configured sink that keeps them (the local store, the dynamodb table), the
    file --db names or the table --dynamodb names."""
    from .capabilities import detection_store, table_store
    from .components import DetectionQuery
    from .output import format_event
    from .plugins import registry
    from .settings import load_settings

    configured = [] if db is not None else load_settings(config).sinks
    if table:
        store = table_store(registry(), table, configured)
    else:
        store = detection_store(registry(), configured, db)
    query = DetectionQuery(stream=stream, since=parse_time(since), until=parse_time(until),
                           limit=limit, label=label)
    as_text = fmt == "text" or (fmt == "auto" and sys.stdout.isatty())
    for event in asyncio.run(_read_closing(store, store.query_events(query))):
        click.echo(format_event(event) if as_text else json.dumps(event))


_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_time(value: str | None) -> datetime | None:
    """`10m`, `2h`, `1d` ago, or an ISO-8601 time (UTC unless it says otherwise)."""
    if not value:
        return None
    match = _AGE.match(value.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return datetime.now(timezone.utc) - timedelta(**{unit: float(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: use an age like 10m, 2h, 1d or an ISO time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def main() -> None:
    from .plugins import extend_cli

    try:
        extend_cli(cli)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    cli()
