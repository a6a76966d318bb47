"""The ``sagemaker`` classifier: a SageMaker endpoint classifies each segment where it lies in S3.

The request is the S3 pointer that the model side's ``model/code/inference.py`` reads
(``{"version": 1, "uri": "s3://...", "top_k": 5}``), never the video bytes, so only ``s3://``
segments (the `s3-events` source's) can be classified this way. The answer is that file's JSON:
label, probability, top_k, model, frames, timings.

Thumbnails (``thumbnails = true`` with ``thumbnails_bucket``): the daemon decodes nothing, so the
endpoint makes them, from the frames it decodes for the model, and writes each window's JPEG to
``s3://<thumbnails_bucket>/<thumbnails_prefix><segment bucket>/<segment key>/<n>.jpg``; the
window's ``thumbnail_uri`` says where (the dynamodb sink keeps it, ``livewatch ui --dynamodb``
shows it). A thumbnail the endpoint could not write is a note, never a failed segment.

What can go wrong, and what becomes of the segment:

- throttling (429, ``ThrottlingException``), a 5xx, a timeout, a lost connection: retried with
  exponential backoff and jitter (`livewatch.retry`; a shutdown ends the wait), ``retries`` times; then a `TransientError` (the segment goes
  back to its source and comes again later);
- ``ModelError`` with a 4xx from the container (``inference.py``: the segment is not video, too
  short, gone from S3...): an error detection with the container's own message, acknowledged; it
  never loops. With a 500 (the model or its runtime failed on a valid segment: out of memory, a
  crash): a `TransientError`, which the daemon retries with backoff, then releases;
- the endpoint does not exist: a `ConfigError` at start (checked with DescribeEndpoint), and a
  `TransientError` that says so if it disappears mid-run (nothing is lost while it is redeployed).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, Literal

from pydantic import Field, PositiveInt, model_validator

from ..aws_clients import AwsOptions, describe, error_code, is_transient, open_client
from ..components import Classifier
from ..contract import Detection, Label, ModelInfo, Segment, WindowResult
from ..errors import ConfigError, SegmentError, TransientError
from ..hookspecs import hookimpl
from ..retry import retry

log = logging.getLogger("livewatch.model.sagemaker")

API_VERSION = 1
#: DescribeEndpoint statuses in which the endpoint answers (or will, soon) InvokeEndpoint.
SERVING = {"InService", "Updating", "SystemUpdating", "Creating", "RollingBack", "UpdateRollbackFailed"}


class SageMakerOptions(AwsOptions):
    endpoint_name: str = Field(description="the SageMaker endpoint that serves the model")
    top_k: int = Field(5, ge=1, description="how many of the most probable labels to ask for")
    windows: Literal["center", "cover"] | PositiveInt = Field(
        "cover", description='windows per segment, as the i3d classifier\'s (sent to the endpoint)')
    invoke_timeout: float = Field(
        70.0, gt=0, description="seconds to wait for one InvokeEndpoint answer (SageMaker's own "
        "limit is 60)")
    max_concurrency: int = Field(
        4, ge=1, description="InvokeEndpoint calls in flight at once, across the daemon's workers")
    retries: int = Field(
        5, ge=0, description="retries of a throttled (429), failed (5xx) or timed-out invocation, "
        "with exponential backoff and jitter, before the segment is released for redelivery")
    retry_base_seconds: float = Field(0.5, gt=0, description="first backoff; doubles per retry")
    retry_max_seconds: float = Field(20.0, gt=0, description="longest backoff between retries")
    check_endpoint: bool = Field(
        True, description="at start, check with DescribeEndpoint that the endpoint exists "
        "(without sagemaker:DescribeEndpoint permission the check is skipped with a warning)")
    thumbnails: bool = Field(
        False, description="have the endpoint write a small JPEG of each window's middle frame "
        "(from the frames it decodes) to thumbnails_bucket; windows then carry its s3:// URI "
        "(thumbnail_uri) for the web page")
    thumbnails_bucket: str | None = Field(
        None, description="the bucket the endpoint writes thumbnails to (the fleet: the artifact "
        "bucket); its role needs s3:PutObject there")
    thumbnails_prefix: str = Field(
        "thumbnails/", description="key prefix of the thumbnails (the model stack lets the "
        "endpoint write under thumbnails/ only)")

    @model_validator(mode="after")
    def _thumbnails_have_a_bucket(self) -> "SageMakerOptions":
        if self.thumbnails and not self.thumbnails_bucket:
            raise ValueError("thumbnails = true needs thumbnails_bucket (the endpoint writes them "
                             "to S3; the daemon never decodes)")
        return self


class SageMakerClassifier(Classifier):
    """Classifies segments in S3 with a SageMaker endpoint (the S3 pointer, never the bytes)."""

    name = "sagemaker"
    Options = SageMakerOptions
    options: SageMakerOptions

    def __init__(self, options: SageMakerOptions, *, instance: str | None = None):
        super().__init__(options, instance=instance)
        self.concurrency = options.max_concurrency
        self._stack: contextlib.AsyncExitStack | None = None
        self._runtime = None
        self._limit = asyncio.Semaphore(options.max_concurrency)

    async def start(self) -> None:
        o = self.options
        self._stack = contextlib.AsyncExitStack()
        # Retries are this classifier's (`retries`), not botocore's: one attempt per call.
        self._runtime = await open_client(
            self._stack, "sagemaker-runtime", o.model_copy(update={"max_attempts": 1}),
            read_timeout=o.invoke_timeout, max_pool_connections=max(10, o.max_concurrency))
        if o.check_endpoint:
            await self._check_endpoint()

    async def _check_endpoint(self) -> None:
        o = self.options
        control = await open_client(self._stack, "sagemaker", o)
        try:
            described = await control.describe_endpoint(EndpointName=o.endpoint_name)
        except Exception as exc:
            message = describe(exc)
            if error_code(exc) == "ValidationException" and "find endpoint" in message:
                raise ConfigError(
                    f"classifier {self.instance!r}: no SageMaker endpoint {o.endpoint_name!r} in "
                    f"this account and region ({message}); check `endpoint_name` and the region, "
                    "or deploy the model stack") from None
            if error_code(exc) in ("AccessDeniedException", "AccessDenied") or is_transient(exc):
                log.warning("classifier %r: could not check endpoint %r (%s); the first "
                            "invocation will tell", self.instance, o.endpoint_name, message)
                return
            raise ConfigError(f"classifier {self.instance!r}: cannot describe SageMaker endpoint "
                              f"{o.endpoint_name!r}: {message}") from None
        status = described.get("EndpointStatus", "?")
        if status not in SERVING:
            raise ConfigError(f"classifier {self.instance!r}: SageMaker endpoint {o.endpoint_name!r} "
                              f"is {status}, not InService ({described.get('FailureReason', '')})")
        if status != "InService":
            log.warning("classifier %r: endpoint %r is %s; segments are retried until it serves",
                        self.instance, o.endpoint_name, status)

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._runtime = None

    async def classify(self, segment: Segment) -> Detection:
        if self._runtime is None:
            raise RuntimeError(f"{self!r} was not started")
        if not segment.uri.startswith("s3://"):
            raise SegmentError(f"the sagemaker classifier reads segments from S3 and {segment.uri} "
                               "is not an s3:// URI; use the i3d classifier for local files")
        o = self.options
        request: dict[str, Any] = {"version": API_VERSION, "uri": segment.uri, "top_k": o.top_k,
                                   "windows": o.windows}
        if o.thumbnails:
            request["thumbnails"] = {"bucket": o.thumbnails_bucket, "prefix": o.thumbnails_prefix}
        body = json.dumps(request)
        async with self._limit:
            started = time.perf_counter()
            answer = await self._invoke_with_retries(segment, body)
            round_trip_ms = (time.perf_counter() - started) * 1000.0
        return to_detection(segment, answer, round_trip_ms)

    async def _invoke_with_retries(self, segment: Segment, body: str) -> dict[str, Any]:
        o, attempts = self.options, 0

        async def invoke() -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            try:
                return await self._invoke(segment, body)
            except _Retry as exc:
                exc.attempts = attempts
                raise

        try:
            return await retry(invoke, on=_Retry,
                               what=f"segment {segment.uri}: SageMaker endpoint {o.endpoint_name!r}",
                               attempts=o.retries + 1, first=o.retry_base_seconds,
                               longest=o.retry_max_seconds, stop=self.stopping, logger=log)
        except _Retry as exc:
            raise TransientError(f"SageMaker endpoint {o.endpoint_name!r}: {exc} ({exc.attempts} "
                                 "attempts); the segment comes again later") from None

    async def _invoke(self, segment: Segment, body: str) -> dict[str, Any]:
        o = self.options
        try:
            response = await self._runtime.invoke_endpoint(
                EndpointName=o.endpoint_name, Body=body.encode(),
                ContentType="application/json", Accept="application/json")
            async with response["Body"] as stream:
                raw = await stream.read()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            code, message = error_code(exc), describe(exc)
            if code == "ModelError":  # the container answered, with an error
                response = getattr(exc, "response", {})
                original = response.get("OriginalMessage") or message
                original = original.split("Traceback (most recent call last)")[0]  # the words, not the stack
                status = response.get("OriginalStatusCode")
                if isinstance(status, int) and 400 <= status < 500:  # the segment's own defect
                    raise SegmentError(f"the model on endpoint {o.endpoint_name!r} failed on this "
                                       f"segment: {_short(original)}") from None
                # the model or its runtime failed on valid input: the daemon tries again later
                raise TransientError(f"the model on endpoint {o.endpoint_name!r} failed "
                                     f"(status {status or '?'}): {_short(original)}") from None
            if code == "ValidationError" and "not found" in message:
                raise TransientError(f"SageMaker endpoint {o.endpoint_name!r} not found ({message}); "
                                     "the segment comes again later") from None
            if is_transient(exc) or code == "ModelNotReadyException":
                raise _Retry(message) from None
            raise SegmentError(f"SageMaker refused the invocation: {message}") from None
        try:
            answer = json.loads(raw)
            if not isinstance(answer, dict) or "label" not in answer:
                raise ValueError("no label")
        except ValueError as exc:
            raise SegmentError(f"endpoint {o.endpoint_name!r} answered something that is not "
                               f"inference.py's JSON ({exc}): {_short(raw.decode('utf-8', 'replace'))}") from None
        return answer


class _Retry(Exception):
    """A failure worth another attempt (throttled, 5xx, timeout, connection)."""

    attempts = 1


def to_detection(segment: Segment, answer: dict[str, Any], round_trip_ms: float) -> Detection:
    """inference.py's answer as a Detection; ``infer_ms`` is the endpoint's round trip."""
    model = answer.get("model") or {}
    return Detection.for_segment(
        segment,
        label=answer["label"],
        probability=float(answer["probability"]),
        top_k=[Label(label=x["label"], probability=float(x["probability"]))
               for x in answer.get("top_k", [])],
        model=ModelInfo(name=str(model.get("name", "")), version=str(model.get("version", ""))),
        frames=[int(i) for i in answer.get("frames", [])],
        decode_ms=answer.get("decode_ms"),
        infer_ms=round(round_trip_ms, 1),
        # An endpoint packaged before windows answers without them: the defaults stand.
        windows=[WindowResult.model_validate(w) for w in answer.get("windows", [])],
        concealed_frames=int(answer.get("concealed_frames", 0)),
        segment_frames=answer.get("segment_frames"),
        expected_frames=answer.get("expected_frames"),
        truncated=bool(answer.get("truncated", False)),
        notes=[str(n) for n in answer.get("notes", [])],
    )


def _short(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@hookimpl
def register_classifiers(register):
    register(SageMakerClassifier)
