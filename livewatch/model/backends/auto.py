"""The ``auto`` backend: the fastest installed backend that agrees with fp32 MXNet on this machine.

Decided once, when the classifier starts, by a short self-check in a process of its own
(``python -m livewatch.model.backends.auto``), so that the backends it tries and drops leave no
memory or threads behind in the daemon: every installed backend (and each of its `variants`, e.g.
OpenVINO's bf16, and its int8 when ``livewatch model quantize`` recorded enough agreement on the
user's own held-out segments: synthetic clips can saturate a model's softmax and hide
disagreement) loads the model and classifies a few deterministic clips; one whose
probabilities stray from MXNet's (``max |dp|`` above `TOLERANCE`, or another top-1 label where
MXNet's is clear) is dropped; of the rest, the fastest median forward pass wins, MXNet included.
The daemon then loads the winner alone and logs the figures.

With ``check_segments`` (a folder of the user's own segments) the check classifies windows spread
through them instead (`sample_windows`), and drops a backend whose top-1 label agrees with MXNet's
on fewer than ``min_agreement`` of them, as ``livewatch model quantize`` does for int8: pictures
like the user's show what a synthetic clip can hide (bf16 on a peaky head, say).
"""
from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from pydantic import Field

from livewatch.errors import ModelError
from livewatch.hookspecs import hookimpl

from ..artifacts import ModelArtifact, load_artifact
from ..backend import Backend, BackendOptions
from ..loaded_model import LoadedModel

log = logging.getLogger(__name__)

REFERENCE = "mxnet"
TOLERANCE = 0.05  # max |probability difference| with fp32 MXNet (bf16 measures ~1e-3 to 1e-2)


class AutoOptions(BackendOptions):
    passes: int = Field(3, ge=1, le=20, description="timed forward passes per backend in the "
                        "start-up self-check (after one warm-up)")
    check_segments: Path | None = Field(
        None, description="a folder of your own segments: the self-check compares top-1 labels on "
        "windows spread through them (recommended) instead of on three synthetic clips")
    check_windows: int = Field(24, ge=2, le=1000, description="with check_segments: windows taken")
    min_agreement: float = Field(0.98, ge=0, le=1, description="with check_segments: the share "
                                 "of windows whose top-1 label must match fp32 MXNet's")


def check_clips(artifact: ModelArtifact) -> np.ndarray:
    """Three deterministic inputs: noise, a ramp and a flat clip, already normalised."""
    meta = artifact.meta
    shape = (3, meta.frames, meta.crop, meta.crop)
    ramp = np.broadcast_to(np.linspace(-2, 2, meta.crop, dtype=np.float32), shape)
    noise = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return np.stack([noise, ramp, np.full(shape, 0.5, np.float32)])[:, None]  # (3, 1, 3, T, H, W)


def segment_clips(artifact: ModelArtifact, folder: Path, windows: int) -> np.ndarray:
    """`windows` normalised windows spread through the video files under `folder` (fewer where a
    file is too short to give as many different windows, or is not video)."""
    from ..preprocess import to_tensor
    from ..sample_windows import VIDEO_SUFFIXES, spread_windows, video_files

    videos = video_files(folder)
    if not videos:
        raise ModelError(f"backend \"auto\": check_segments {str(folder)!r} has no video files "
                         f"({', '.join(VIDEO_SUFFIXES)})")
    videos = videos[:: max(1, len(videos) // windows)][:windows]  # spread over the folder
    share, extra = divmod(windows, len(videos))  # `windows` in all, the first files one more
    meta = artifact.meta
    clips = [to_tensor(w, crop=meta.crop, mean=meta.mean, std=meta.std)
             for i, v in enumerate(videos) for w in spread_windows(artifact, v, share + (i < extra))]
    if len(clips) < 2:
        raise ModelError(f"backend \"auto\": fewer than 2 windows could be decoded from the "
                         f"{len(videos)} video files under check_segments {str(folder)!r}")
    return np.stack(clips)  # (N, 1, 3, T, H, W)


def self_check(artifact: ModelArtifact, candidates: list[tuple[str, type[Backend], dict]],
               options: BackendOptions, passes: int = 3, segments: Path | None = None,
               windows: int = 24, min_agreement: float = 0.98) -> dict:
    """Time and check each candidate (name, backend, backend_options) against `REFERENCE`, which
    must be the first, on synthetic clips or, given `segments`, on `windows` windows of them.
    Returns {"choice": name, "options": {...}, "results": {name: {...}}}."""
    clips = check_clips(artifact) if segments is None else segment_clips(artifact, segments, windows)
    results: dict[str, dict] = {}
    expected = None
    for label, backend, extra in candidates:
        started = time.perf_counter()
        try:
            model = backend.load(artifact, backend.Options.model_validate(
                {**extra, "device": options.device, "threads": options.threads}))
            probs = np.concatenate([model.predict(c) for c in clips])
            times = []
            for _ in range(passes):
                t = time.perf_counter()
                model.predict(clips[0])
                times.append((time.perf_counter() - t) * 1000)
        except Exception as exc:  # a backend that cannot run here is simply not chosen
            results[label] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        finally:
            model = None  # noqa: F841  (freed before the next backend loads)
        row = {"backend": backend.name, "options": extra, "median_ms": statistics.median(times),
               "load_s": round(time.perf_counter() - started, 1)}
        if expected is None:
            if label != REFERENCE:
                raise ModelError(f"the self-check needs backend {REFERENCE!r} first, as reference")
            expected = probs
        row.update(agreement(expected, probs) if segments is None
                   else top1_agreement(expected, probs, min_agreement))
        results[label] = row
    if expected is None:
        raise ModelError(f"backend \"auto\" needs {REFERENCE!r} as its reference: "
                         f"{results.get(REFERENCE, {}).get('error', 'not installed')}")
    agreeing = [k for k, r in results.items() if r.get("agrees")]
    choice = min(agreeing, key=lambda k: results[k]["median_ms"])
    return {"choice": results[choice]["backend"], "options": results[choice]["options"],
            "label": choice, "results": results}


def agreement(expected: np.ndarray, got: np.ndarray) -> dict:
    """Max |dp|, and whether `got` agrees: within `TOLERANCE`, and the same top-1 wherever
    MXNet's top two are further apart than twice the difference (a near-tie may flip)."""
    diff = float(np.abs(expected - got).max())
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * diff
    same = expected.argmax(1) == got.argmax(1)
    return {"max_abs_diff": diff, "agrees": bool(diff <= TOLERANCE and np.all(same | ~clear))}


def top1_agreement(expected: np.ndarray, got: np.ndarray, min_agreement: float) -> dict:
    """On the user's windows: whether the top-1 labels match on at least `min_agreement` of them
    (probabilities may differ more: int8 moves them by 0.1-0.2 and keeps the labels)."""
    share = float(np.mean(expected.argmax(1) == got.argmax(1)))
    return {"max_abs_diff": float(np.abs(expected - got).max()), "windows": len(expected),
            "top1_agreement": share, "agrees": share >= min_agreement}


def candidates(artifact: ModelArtifact) -> list[tuple[str, type[Backend], dict]]:
    """`REFERENCE` first, then every other installed backend and variant (``auto`` aside)."""
    from livewatch.plugins import registry

    found = []
    for entry in registry().of_kind("backend"):
        backend = entry.cls
        if backend.name == AutoBackend.name or not backend.available():
            continue
        for extra in backend.variants(artifact):
            label = backend.name + "".join(f" {k}={v}" for k, v in extra.items())
            found.append((label, backend, extra))
    found.sort(key=lambda c: c[0] != REFERENCE)
    return found


class AutoBackend(Backend):
    """Picks the fastest installed backend that agrees with MXNet fp32, once, at start-up."""

    name = "auto"
    summary = "the fastest installed backend that agrees with fp32 MXNet here (a start-up self-check)"
    Options = AutoOptions
    modules = ("mxnet",)  # the reference
    install = "pip install mxnet"

    @classmethod
    def load(cls, artifact: ModelArtifact, options: AutoOptions) -> LoadedModel:
        from livewatch.plugins import registry

        if options.device == "gpu":  # only MXNet runs on a GPU here
            choice = {"choice": REFERENCE, "options": {}, "label": REFERENCE, "results": {}}
        else:
            choice = run_self_check(artifact, options)
        backend = registry().get("backend", choice["choice"]).cls
        model = backend.load(artifact, backend.Options.model_validate(
            {**choice["options"], "device": options.device, "threads": options.threads}))
        return model


def run_self_check(artifact: ModelArtifact, options: AutoOptions) -> dict:
    """`self_check` in a child process; logs and returns its answer."""
    started = time.perf_counter()
    request = {"directory": str(artifact.directory), "name": artifact.name,
               "version": artifact.version, "options": options.model_dump(mode="json")}
    args = [sys.executable, "-m", __name__, json.dumps(request)]
    done = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise ModelError(f"backend \"auto\": the self-check failed:\n{done.stderr[-3000:]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    figures = "; ".join(f"{k}: {_figures(r)}" for k, r in answer["results"].items())
    log.info("backend auto chose %s after a %.0f s self-check on this machine (%s): %s",
             answer["label"], time.perf_counter() - started,
             f"on windows of {options.check_segments}" if options.check_segments
             else "on synthetic clips; check_segments checks on your own", figures)
    return answer


def _figures(result: dict) -> str:
    if "error" in result:
        return result["error"][:120]
    text = f"{result['median_ms']:.0f} ms/clip, max |dp| {result['max_abs_diff']:.1e}"
    if "windows" in result:
        text += f", top-1 same on {result['top1_agreement']:.0%} of {result['windows']} windows"
    return text + ("" if result["agrees"] else " (disagrees: dropped)")


def main(argv: list[str]) -> int:
    """``python -m livewatch.model.backends.auto REQUEST_JSON``: print the choice as JSON."""
    request = json.loads(argv[0])
    options = AutoOptions.model_validate(request["options"])
    artifact = load_artifact(Path(request["directory"]), name=request["name"],
                             version=request["version"])
    answer = self_check(artifact, candidates(artifact), options, passes=options.passes,
                        segments=options.check_segments, windows=options.check_windows,
                        min_agreement=options.min_agreement)
    print(json.dumps(answer))
    return 0


@hookimpl
def register_backends(register):
    register(AutoBackend)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main(sys.argv[1:]))
