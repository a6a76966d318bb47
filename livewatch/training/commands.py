"""`livewatch model prep|synth|train|package|info|evaluate|quantize` and `livewatch demo`.

Registered through the `register_commands` hook, as a third-party plugin would add commands.
Everything heavy (MXNet, GluonCV, PyAV) is imported when a command runs, not when the CLI loads.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

from livewatch.hookspecs import hookimpl


def _size(value: str | tuple | None) -> tuple[int, int] | None:
    if value is None or isinstance(value, tuple):
        return value
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: use WIDTHxHEIGHT, e.g. 340x256") from None
    return w, h


@click.group("model")
def model_group():
    """Prepare data, fine-tune, package and inspect models."""


@model_group.command("prep")
@click.argument("root", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write train.txt, val.txt, classes.txt (default: ROOT).")
@click.option("--train-list", type=click.Path(dir_okay=False, exists=True), help="UCF101 trainlist0N.txt.")
@click.option("--test-list", type=click.Path(dir_okay=False, exists=True), help="UCF101 testlist0N.txt.")
@click.option("--class-index", type=click.Path(dir_okay=False, exists=True),
              help="UCF101 classInd.txt: the label order (default: class folders sorted).")
@click.option("--val-fraction", type=click.FloatRange(0, 0.9), default=0.2, show_default=True,
              help="Without split files: share of each class held out for validation.")
@click.option("--seed", type=int, default=0, show_default=True)
def prep(root, out, train_list, test_list, class_index, val_fraction, seed):
    """Check a folder-per-class video collection and write GluonCV's setting files.

    Unreadable videos are reported and left out; the command still succeeds.
    """
    from .prep import prepare

    result = prepare(root, out, train_list=train_list, test_list=test_list, class_index=class_index,
                     val_fraction=val_fraction, seed=seed)
    click.echo(result.summary())
    click.echo(f"wrote {result.out / 'train.txt'}, {result.out / 'val.txt'}, {result.out / 'classes.txt'}")


@model_group.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--per-class", type=click.IntRange(1), default=40, show_default=True)
@click.option("--seconds", type=click.FloatRange(0.5), default=2.0, show_default=True)
@click.option("--fps", type=click.IntRange(1), default=15, show_default=True)
@click.option("--size", default="128x96", show_default=True, help="WIDTHxHEIGHT of the videos.")
@click.option("--ext", type=click.Choice([".mp4", ".ts"]), default=".mp4", show_default=True)
@click.option("--seed", type=int, default=1, show_default=True, help="Another seed, other pictures.")
def synth(out, per_class, seconds, fps, size, ext, seed):
    """Write a labelled camera-motion video set (pan_left, pan_right, zoom_in, still)."""
    from .synthetic import write_motion_dataset

    written = write_motion_dataset(out, per_class=per_class, seconds=seconds, fps=fps,
                                   size=_size(size), seed=seed, ext=ext)
    click.echo(f"wrote {len(written)} videos into {out}")


@model_group.command("train")
@click.argument("data", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The model directory to export (new or empty).")
@click.option("--root", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The videos' root, if not DATA.")
@click.option("--backbone", default="i3d_resnet50_v1", show_default=True,
              help="i3d_resnet50_v1 (Kinetics400 I3D), another GluonCV action-recognition model "
                   "name, or small3d (small, from scratch, for CPUs).")
@click.option("--pretrained/--no-pretrained", default=True, show_default=True,
              help="Start from the zoo's weights (downloaded once) or from scratch.")
@click.option("--frames", type=click.IntRange(1), default=32, show_default=True)
@click.option("--step", type=click.IntRange(1), default=1, show_default=True,
              help="Take every STEP-th frame (GluonCV's new_step); recorded in model.json.")
@click.option("--crop", type=click.IntRange(8), default=224, show_default=True)
@click.option("--resize", default="340x256", show_default=True, help="WIDTHxHEIGHT before the crop.")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd", show_default=True)
@click.option("--lr", type=float, default=0.01, show_default=True, help="Learning rate (cosine decay).")
@click.option("--wd", type=float, default=1e-4, show_default=True, help="Weight decay.")
@click.option("--flip-prob", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Random horizontal flips (they swap left and right motion).")
@click.option("--gpus", type=click.IntRange(0), default=0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--name", help="Model name in model.json (default: the --out folder's name).")
@click.option("--version", "version_", help="Model version (default: a checksum).")
@click.option("--progress/--no-progress", default=True, help="Progress bar per epoch.")
def train_command(data, out, root, backbone, pretrained, frames, step, crop, resize, epochs, batch_size,
                  optimizer, lr, wd, flip_prob, gpus, seed, name, version_, progress):
    """Fine-tune on DATA (a folder with `model prep`'s files) and export the best epoch."""
    from .train import TrainConfig, train

    config = TrainConfig(data=data, out=out, root=root, backbone=backbone, pretrained=pretrained,
                         frames=frames, step=step, crop=crop, resize=_size(resize), epochs=epochs,
                         batch_size=batch_size, optimizer=optimizer, lr=lr, wd=wd,
                         flip_prob=flip_prob, gpus=gpus, seed=seed, name=name, version=version_,
                         progress=progress)
    train(config, echo=click.echo)


@model_group.command("package")
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("model.tar.gz"),
              show_default=True)
@click.option("--code", "code_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Serving code folder (default: the repository's model/code).")
def package_command(model_dir, out, code_dir):
    """Build the model.tar.gz for SageMaker's MXNet container (and the in-process classifier)."""
    from .package import describe, format_info, package

    archive = package(model_dir, out, code_dir=code_dir)
    click.echo(format_info(describe(str(archive))))


@model_group.command("info")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(model, as_json):
    """Classes, input shape and checksums of a model directory, model.tar.gz, s3:// URI or zoo name."""
    from .package import describe, format_info

    details = describe(model)
    click.echo(json.dumps(details, indent=2) if as_json else format_info(details))


@model_group.command("evaluate")
@click.argument("model")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.9, show_default=True)
def evaluate(model, folder, threshold):
    """Classify a folder-per-class video set with MODEL as the daemon would; exit 1 below THRESHOLD."""
    from .evaluate import accuracy_check, classify_videos
    from .prep import find_videos

    videos = [(folder / rel, cls) for cls, rels in find_videos(folder).items() for rel in rels]
    check = accuracy_check(classify_videos(model, [p for p, _ in videos]), [c for _, c in videos],
                           threshold)
    for uri, want, got in check.wrong:
        click.echo(f"  {uri}: expected {want}, got {got}")
    click.echo(str(check))
    raise SystemExit(0 if check.passed else 1)


@model_group.command("quantize")
@click.argument("model")
@click.option("--calibrate", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="A folder of your own segments (searched recursively), a few dozen or more.")
@click.option("--windows", type=click.IntRange(4), default=300, show_default=True,
              help="Windows taken from them, spread evenly, calibration and held-out together.")
@click.option("--held-out", type=click.FloatRange(0.05, 0.9), default=0.25, show_default=True,
              help="Share of the segments kept out of the calibration to check the result on.")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=0.98, show_default=True,
              help="Refuse (write nothing, exit 1) below this top-1 agreement with fp32 MXNet.")
def quantize_command(model, calibrate, windows, held_out, min_agreement):
    """An int8 model (NNCF post-training quantization) for backend "openvino", precision "int8"."""
    from livewatch.errors import ModelError
    from livewatch.model.backends.openvino_quantize import quantize

    try:
        q = quantize(model, calibrate, windows=windows, held_out=held_out, min_agreement=min_agreement)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {q.path}: top-1 agrees with fp32 MXNet on {q.top1_agreement:.1%} of "
               f"{q.held_out_windows} held-out windows (max |probability difference| "
               f"{q.max_abs_diff:.3f}); calibrated on {q.calibration_windows} windows "
               f"in {q.seconds:.0f}s")


#: `livewatch demo --quick`: a smaller training set, fewer epochs, a shorter stream.
QUICK = {"per_class": 24, "epochs": 20, "segments": 8}


@click.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the data, model and live stream here (default: a temporary folder).")
@click.option("--segments", type=click.IntRange(1), default=12, show_default=True,
              help="Live segments to play.")
@click.option("--seconds", type=click.FloatRange(1.0), default=2.0, show_default=True,
              help="Length of each live segment.")
@click.option("--model", type=click.Path(exists=True, path_type=Path),
              help="Use this model instead of building and training one.")
@click.option("--per-class", type=click.IntRange(4), default=40, show_default=True,
              help="Training videos per class.")
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--min-accuracy", type=click.FloatRange(0, 1), default=0.75, show_default=True,
              help="Exit 1 when fewer live segments than this are classified as scripted.")
@click.option("--quick", is_flag=True,
              help="About half the time: " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items())
                   + " (options given explicitly win).")
@click.pass_context
def demo(ctx, workdir, segments, seconds, model, per_class, epochs, seed, min_accuracy, quick):
    """Offline end to end: make a labelled set, train, package, then classify a scripted live
    stream with the daemon and show the detections against the script."""
    from livewatch.model.backends.mxnet import import_mxnet

    from .demo import run_demo

    sizes = {"segments": segments, "per_class": per_class, "epochs": epochs}
    if quick:
        sizes.update({name: value for name, value in QUICK.items()
                      if ctx.get_parameter_source(name) is click.core.ParameterSource.DEFAULT})
    import_mxnet()  # before anything else loads MXNet: bounded threads (see backends.mxnet)
    with tempfile.TemporaryDirectory(prefix="livewatch-demo-") as tmp:
        work = workdir or Path(tmp)
        result = run_demo(work, seconds=seconds, model=model, seed=seed, echo=click.echo, **sizes)
    raise SystemExit(0 if result.accuracy >= min_accuracy else 1)


@hookimpl
def register_commands(cli):
    cli.add_command(model_group)
    cli.add_command(demo)

