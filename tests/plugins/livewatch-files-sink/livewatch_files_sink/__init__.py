"""A livewatch sink plugin, packaged the way a third party would: one JSON file per detection,
at <folder>/<stream>/<sha1 of the uri>.json, written atomically, so a rewrite stays one file."""
import asyncio
import hashlib
import os
from pathlib import Path

from livewatch.components import Options, Sink
from livewatch.hookspecs import hookimpl


class FilesOptions(Options):
    folder: Path


class FilesSink(Sink):
    """Writes each detection to its own JSON file."""

    name = "files"
    Options = FilesOptions

    def _write(self, detection):
        folder = self.options.folder / detection.stream
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / (hashlib.sha1(detection.uri.encode()).hexdigest() + ".json")
        tmp = target.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(detection.model_dump_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)

    async def write(self, detection):
        await asyncio.to_thread(self._write, detection)


@hookimpl
def register_sinks(register):
    register(FilesSink)


@hookimpl
def register_commands(cli):
    import click

    @cli.command(name="files-summary")
    @click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
    def files_summary(folder):
        """Count the detections the `files` sink wrote, per stream."""
        for stream in sorted(p for p in folder.iterdir() if p.is_dir()):
            click.echo(f"{stream.name}: {len(list(stream.glob('*.json')))}")
