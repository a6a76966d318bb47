"""SageMaker MXNet serving entry point (``SAGEMAKER_PROGRAM=inference.py``).

The container unpacks ``model.tar.gz`` into the model directory (``model-symbol.json``,
``model-0000.params``, ``classes.txt``, ``model.json``) with this file in ``code/``, calls
`model_fn` once, then `transform_fn` per request.

Request (``application/json``), either the original sample's shape::

    {"S3_VIDEO_PATH": "s3://bucket/key.ts", "MODEL_MAX_FRAMES": 32}

or livewatch's versioned form::

    {"version": 1, "uri": "s3://bucket/key.ts", "top_k": 5, "windows": "cover"}

``windows`` is ``"center"``, ``"cover"`` (the default, also for the original sample's form) or a
number of windows, as the daemon's ``classifier.windows``.

Either form may ask for thumbnails: ``"thumbnails": {"bucket": "B", "prefix": "thumbnails/"}``
(``prefix`` defaults to ``thumbnails/``; the model stack lets the endpoint write there only). Then
a small JPEG of each window's middle frame, from the frames already decoded for the model (the
daemon's `livewatch.model.thumbnails`: same size and quality as the in-process classifier's), is
written to ``s3://B/<prefix><segment bucket>/<segment key>/<n>.jpg`` (``<prefix>sha256-<hex of the
URI>/<n>.jpg`` when that key would pass S3's 1024 bytes), and each window of the answer carries it
as ``thumbnail_uri``. Writing them is best effort: a window whose JPEG could not be written has no
``thumbnail_uri``, the answer's ``notes`` say why (and the container's log), and the
classification stands. Without ``thumbnails`` nothing is written.

The model directory is read and the network loaded (oneDNN fusion included), and the segment is
read from S3 and decoded, sampled and preprocessed, by the daemon's own modules
(``livewatch.model.model_files``/``mxnet_net``/``video``/``preprocess``/``sampling``, copied beside
this file by ``livewatch model package``), so the endpoint and the in-process classifier load the
same model and see the same tensor.
The model reads as many frames as it was trained on (``model.json``); MODEL_MAX_FRAMES, when it
asks for another number, is reported back (``note``), not obeyed. The original sample's form gets
the top 5 labels.

Response (``application/json``)::

    {"version": 1, "uri": "s3://bucket/key.ts", "label": "pan_left", "probability": 0.97,
     "top_k": [{"label": "pan_left", "probability": 0.97}, ...],
     "model": {"name": "camera-motion", "version": "e973a3c46465"},
     "frames": [11, 12, ...], "decode_ms": 9.0, "infer_ms": 8.2,
     "windows": [{"start": 0.0, "end": 2.56, "frames": [0, 62], "label": "pan_left",
                  "probability": 0.99, "top_k": [...], "concealed_frames": 0,
                  "thumbnail_uri": "s3://B/thumbnails/bucket/key.ts/0.jpg"}, ...],
     "concealed_frames": 0, "segment_frames": 250, "expected_frames": null, "truncated": false,
     "notes": []}

The segment's label, probability and top_k are the mean of its windows' probabilities.

Errors are raised, and the container answers them with an error status and the message. The
request's or the segment's own defects are 4xx (never worth a retry): a request that is neither
form (400, saying what is expected), an object S3 does not have (404), a segment that is not
decodable video (422, ``livewatch.errors.SegmentError``'s words). Anything else, the model or its
runtime failing on a valid segment, or S3 failing, is a 500: the caller tries again later.

S3 is reached with the container's credentials; ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``
point it elsewhere (a local emulator in the tests). Nothing is written anywhere but the
thumbnails asked for: sinks write the results.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import sys
import time
from urllib.parse import urlparse

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the copied livewatch modules

from livewatch.errors import SegmentError  # noqa: E402
from livewatch.model.model_files import DEFAULT_META, model_identity, read_classes, read_meta  # noqa: E402
from livewatch.model.mxnet_net import hybridize, load_block  # noqa: E402
from livewatch.model.preprocess import to_tensor  # noqa: E402
from livewatch.model.video import decode_segment  # noqa: E402

API_VERSION = 1
THUMBNAIL_PREFIX = "thumbnails/"
MAX_KEY_BYTES = 1024  # S3's limit on an object key

log = logging.getLogger("livewatch.serving")

try:  # the serving container's toolkit: an error answered with a status of our choosing
    from sagemaker_inference.errors import GenericInferenceToolkitError
except ImportError:  # elsewhere (a plain import of this file): errors stay as they are
    GenericInferenceToolkitError = None


class Model:
    def __init__(self, net, ctx, classes, meta):
        self.net, self.ctx, self.classes, self.meta = net, ctx, classes, meta

    def predict(self, batch: np.ndarray) -> np.ndarray:
        import mxnet as mx

        logits = self.net(mx.nd.array(batch, ctx=self.ctx, dtype=np.float32))
        return mx.nd.softmax(logits, axis=-1).asnumpy()


def model_fn(model_dir: str) -> Model:
    import mxnet as mx

    ctx = mx.gpu(0) if mx.context.num_gpus() else mx.cpu()
    # The daemon's own reading of a model directory (livewatch.model.model_files) and loading
    # of the network (livewatch.model.mxnet_net: oneDNN fusion on the CPU), copied beside this file.
    meta = {**DEFAULT_META, **read_meta(model_dir)}
    meta["name"], meta["version"] = model_identity(model_dir, meta.get("name"), meta.get("version"))
    net = load_block(mx, model_dir, ctx)
    hybridize(mx, net, ctx)
    model = Model(net, ctx, list(read_classes(model_dir)), meta)
    model.predict(np.zeros((1, 3, meta["frames"], meta["crop"], meta["crop"]), np.float32))  # warm up
    return model


def parse_request(body) -> dict:
    """The payload as {"uri", "top_k", "requested_frames"}; ValueError says what is wrong."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8")
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"the request body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValueError("the request body must be a JSON object")
    if "S3_VIDEO_PATH" in payload:
        request = {"uri": payload["S3_VIDEO_PATH"], "top_k": 5, "windows": "cover",
                   "requested_frames": payload.get("MODEL_MAX_FRAMES")}
    elif payload.get("version") == API_VERSION and "uri" in payload:
        top_k = payload.get("top_k", 5)
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise ValueError(f"top_k must be a whole number of at least 1, not {top_k!r}")
        windows = payload.get("windows", "cover")
        if windows not in ("center", "cover") and not (
                isinstance(windows, int) and not isinstance(windows, bool) and windows >= 1):
            raise ValueError(f'windows must be "center", "cover" or a number of at least 1, '
                             f'not {windows!r}')
        request = {"uri": payload["uri"], "top_k": top_k, "windows": windows,
                   "requested_frames": None}
    else:
        raise ValueError('expected {"S3_VIDEO_PATH": "s3://...", "MODEL_MAX_FRAMES": 32} or '
                         f'{{"version": {API_VERSION}, "uri": "s3://...", "top_k": 5}}')
    if not str(request["uri"]).startswith("s3://"):
        raise ValueError(f"{request['uri']!r} is not an s3:// URI")
    request["thumbnails"] = parse_thumbnails(payload.get("thumbnails"))
    return request


def parse_thumbnails(value) -> dict | None:
    """The request's ``thumbnails`` as {"bucket", "prefix"}, or None (none asked for)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("bucket"), str) or not value["bucket"]:
        raise ValueError('thumbnails must be {"bucket": "name", "prefix": "thumbnails/"}, '
                         f"not {value!r}")
    prefix = value.get("prefix", THUMBNAIL_PREFIX)
    if not isinstance(prefix, str):
        raise ValueError(f"thumbnails.prefix must be a string, not {prefix!r}")
    return {"bucket": value["bucket"], "prefix": prefix}


def thumbnail_key(prefix: str, uri: str, n: int) -> str:
    """Where window `n` of segment `uri` goes: the segment's bucket and key under `prefix`, or
    the URI's SHA-256 when that key would be too long for S3."""
    parsed = urlparse(uri)
    key = f"{prefix}{parsed.netloc}/{parsed.path.lstrip('/')}/{n}.jpg"
    if len(key.encode()) > MAX_KEY_BYTES:
        key = f"{prefix}sha256-{hashlib.sha256(uri.encode()).hexdigest()}/{n}.jpg"
    return key


@functools.lru_cache(maxsize=4)
def _s3_client(endpoint: str | None):
    """One client per worker process (making one costs more than a small GET)."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint) if endpoint else boto3.client("s3")


def read_s3(uri: str) -> bytes:
    parsed = urlparse(uri)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    s3 = _s3_client(endpoint)
    return s3.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read()


def write_thumbnails(frames, uri: str, where: dict) -> tuple[list, list]:
    """Each window's middle-frame JPEG written under ``where`` (best effort): the written
    objects' URIs (None where a window's failed) and what went wrong, in words."""
    uris: list = [None] * len(frames)
    try:
        from livewatch.model.thumbnails import window_thumbnails  # Pillow: only when asked

        jpegs = window_thumbnails(frames)
    except Exception as exc:
        return uris, [f"thumbnails not made: {type(exc).__name__}: {exc}"]
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    failed = []
    for n, jpeg in enumerate(jpegs):
        key = thumbnail_key(where["prefix"], uri, n)
        try:
            _s3_client(endpoint).put_object(Bucket=where["bucket"], Key=key, Body=jpeg,
                                            ContentType="image/jpeg")
        except Exception as exc:
            failed.append(f"{n}: {type(exc).__name__}: {exc}")
            continue
        uris[n] = f"s3://{where['bucket']}/{key}"
    notes = []
    if failed:
        notes.append(f"thumbnails not written to s3://{where['bucket']}/{where['prefix']} "
                     f"(window {'; '.join(failed)})")
    return uris, notes


def predict_bytes(model: Model, data: bytes, top_k: int = 5, windows="cover", *,
                  uri: str | None = None, thumbnails: dict | None = None) -> dict:
    """Decode, preprocess and classify one segment's bytes, as the daemon's classifier does: its
    windows in one batch, the segment's labels from the mean of their probabilities; with
    `thumbnails` ({"bucket", "prefix"}), each window's middle frame written there too."""
    meta = model.meta
    decoded = decode_segment(io.BytesIO(data), new_length=meta["frames"],
                             new_step=meta.get("step", 1), windows=windows,
                             size=tuple(meta["resize"]))
    started = time.perf_counter()
    batch = np.concatenate([to_tensor(frames, crop=meta["crop"], mean=tuple(meta["mean"]),
                                      std=tuple(meta["std"])) for frames in decoded.frames])
    probs = model.predict(batch)
    infer_ms = (time.perf_counter() - started) * 1000.0

    def labels(row):
        order = np.argsort(-row, kind="stable")[:top_k]
        return [{"label": model.classes[i], "probability": float(row[i])} for i in order]

    best = labels(probs.mean(axis=0))
    spans = []
    for span, row in zip(decoded.windows, probs):
        top = labels(row)
        spans.append({"start": span.start, "end": span.end,
                      "frames": [span.indices[0], span.indices[-1]], "label": top[0]["label"],
                      "probability": top[0]["probability"], "top_k": top,
                      "concealed_frames": span.concealed})
    notes = list(decoded.notes)
    if thumbnails is not None:
        written, problems = write_thumbnails(decoded.frames, uri, thumbnails)
        for span, thumbnail_uri in zip(spans, written):
            if thumbnail_uri is not None:
                span["thumbnail_uri"] = thumbnail_uri
        for problem in problems:  # the classification stands
            log.warning("%s: %s", uri, problem)
            notes.append(problem)
    return {
        "label": best[0]["label"],
        "probability": best[0]["probability"],
        "top_k": best,
        "model": {"name": meta["name"], "version": meta["version"]},
        "frames": [i for span in decoded.windows for i in span.indices],
        "decode_ms": round(decoded.decode_ms, 1),
        "infer_ms": round(infer_ms, 1),
        "windows": spans,
        "concealed_frames": decoded.concealed_frames,
        "segment_frames": decoded.num_frames,
        "expected_frames": decoded.expected_frames,
        "truncated": decoded.truncated,
        "notes": notes,
    }


def transform_fn(model: Model, request_body, content_type="application/json", accept="application/json"):
    try:
        request = parse_request(request_body)
    except ValueError as exc:
        _refuse(exc, 400)
    try:
        data = read_s3(request["uri"])
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code in ("NoSuchKey", "NoSuchBucket", "404"):
            _refuse(exc, 404)
        raise
    try:
        result = predict_bytes(model, data, request["top_k"], request["windows"],
                               uri=request["uri"], thumbnails=request["thumbnails"])
    except SegmentError as exc:
        _refuse(exc, 422)
    result = {"version": API_VERSION, "uri": request["uri"], **result}
    if request["requested_frames"] not in (None, model.meta["frames"]):
        result["note"] = (f"MODEL_MAX_FRAMES={request['requested_frames']} ignored: this model "
                          f"reads {model.meta['frames']} frames")
    return json.dumps(result), "application/json"


def _refuse(exc: Exception, status: int):
    """Answer the request's or the segment's own defect with a 4xx: never worth a retry (the
    sagemaker classifier writes an error detection). Everything else, the model failing on a
    valid segment (out of memory...), stays the toolkit's 500: transient, tried again later."""
    if GenericInferenceToolkitError is None:
        raise exc
    raise GenericInferenceToolkitError(status, str(exc)) from exc
