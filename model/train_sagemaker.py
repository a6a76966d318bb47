"""SageMaker training entry point: the same code as `livewatch model prep` + `livewatch model train`.

Channels (folder-per-class video collections, UCF101's layout):
  SM_CHANNEL_TRAIN  training videos (required)
  SM_CHANNEL_VAL    validation videos (optional; or SM_CHANNEL_VALIDATION; without it,
                    --val-fraction of train is held out)
Output:
  SM_MODEL_DIR      the exported model plus ``code/`` (the serving code), which SageMaker packs as
                    model.tar.gz: deployable to the MXNet serving container and readable by the
                    daemon's in-process classifier as it is.

Hyperparameters arrive as command-line flags (``--epochs 10 --backbone i3d_resnet50_v1 ...``;
``--batch_size`` and the other multi-word ones are accepted with underscores too, as SageMaker
spells them). ``--pretrained false`` trains from scratch (no download).
The training image needs livewatch installed (e.g. its wheel in ``requirements.txt``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"))
    p.add_argument("--val", default=os.environ.get("SM_CHANNEL_VAL") or os.environ.get("SM_CHANNEL_VALIDATION"))
    p.add_argument("--model-dir", "--model_dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    p.add_argument("--backbone", default="i3d_resnet50_v1")
    p.add_argument("--pretrained", type=lambda v: str(v).lower() in ("1", "true", "yes"), default=True)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--resize", default="340x256")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", "--batch_size", type=int, default=8)
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--wd", type=float, default=1e-4)
    p.add_argument("--flip-prob", "--flip_prob", type=float, default=0.0)
    p.add_argument("--gpus", type=int, default=int(os.environ.get("SM_NUM_GPUS", "0")))
    p.add_argument("--val-fraction", "--val_fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None)
    p.add_argument("--version", default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.train:
        print("no training data: set SM_CHANNEL_TRAIN or pass --train", file=sys.stderr)
        return 2
    from livewatch.training.package import build_code_dir
    from livewatch.training.prep import prepare
    from livewatch.training.train import TrainConfig, train

    # SageMaker's framework estimators pass `--model_dir s3://...` (where the container, not this
    # script, uploads to): the files always go to the local SM_MODEL_DIR.
    out = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model") if args.model_dir.startswith("s3://")
               else args.model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        train_prep = prepare(args.train, data / "train", val_fraction=0.0 if args.val else args.val_fraction,
                             seed=args.seed)
        print(train_prep.summary())
        train_rows, val_rows = _absolute(train_prep, "train"), _absolute(train_prep, "val")
        if args.val:
            val_prep = prepare(args.val, data / "val", val_fraction=1.0)
            if val_prep.classes != train_prep.classes:
                print(f"the val channel's classes {val_prep.classes} differ from train's "
                      f"{train_prep.classes}", file=sys.stderr)
                return 2
            print(val_prep.summary())
            val_rows = _absolute(val_prep, "val")
        (data / "train.txt").write_text("".join(f"{p} {n} {y}\n" for p, n, y in train_rows))
        (data / "val.txt").write_text("".join(f"{p} {n} {y}\n" for p, n, y in val_rows))
        (data / "classes.txt").write_text("".join(f"{c}\n" for c in train_prep.classes))
        w, h = (int(v) for v in args.resize.lower().split("x"))
        config = TrainConfig(
            data=data, root=Path("/"), out=data / "model", backbone=args.backbone, pretrained=args.pretrained,
            frames=args.frames, crop=args.crop, resize=(w, h), epochs=args.epochs,
            batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, wd=args.wd,
            flip_prob=args.flip_prob, gpus=args.gpus, seed=args.seed, name=args.name,
            version=args.version, progress=False)
        train(config)
        # Copied, not renamed, into place: SM_MODEL_DIR exists already and may be a mount point.
        out.mkdir(parents=True, exist_ok=True)
        shutil.copytree(data / "model", out, dirs_exist_ok=True)
    build_code_dir(out / "code", Path(__file__).resolve().parent / "code")
    print(f"wrote the model and its serving code to {out}")
    return 0


def _absolute(prep, split: str) -> list[tuple[str, int, int]]:
    return [(str((prep.root / rel).resolve()), n, y) for rel, n, y in getattr(prep, split)]


if __name__ == "__main__":
    sys.exit(main())
