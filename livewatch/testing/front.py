"""A local HTTP front for an AWS emulator: forwards every request to it unchanged, except the
answers a test stages, so behaviour the emulator never shows (DynamoDB leaving items unprocessed)
is reached over real HTTP through the real client, as `serving.EndpointFront` does for SageMaker.

    with AwsFront(moto_server.endpoint_url) as front:
        front.unprocess(calls=2, keep=1)   # the next 2 BatchWriteItem calls write only 1 item each
        sink = DynamoDBSink(DynamoDBOptions(table=..., endpoint_url=front.endpoint_url))
        ...
    front.batch_sizes   # items asked for in each BatchWriteItem call, in order
    front.targets       # the X-Amz-Target of each DynamoDB call (GETs, S3 reads, pass through)
"""
from __future__ import annotations

import json
import threading

from .http_front import FrontHandler, HttpFront


class AwsFront(HttpFront):
    thread_name = "aws-front"

    def __init__(self, upstream: str, *, timeout: float = 30.0):
        self.upstream, self.timeout = upstream.rstrip("/"), timeout
        self.targets: list[str] = []  # X-Amz-Target of each JSON-protocol call, in order
        self.batch_sizes: list[int] = []
        self._unprocessed: list[int] = []  # items to keep, per staged BatchWriteItem call
        self._lock = threading.Lock()
        super().__init__()

    def unprocess(self, calls: int, keep: int = 0) -> None:
        """The next `calls` BatchWriteItem calls write only their first `keep` items and return
        the rest as UnprocessedItems, as DynamoDB does when a partition is throttled."""
        with self._lock:
            self._unprocessed = [keep] * calls

    def _stage(self, target: str, body: bytes) -> tuple[bytes, dict]:
        """(the body to forward, the UnprocessedItems to add to the answer)."""
        if not target.endswith(".BatchWriteItem"):
            return body, {}
        request = json.loads(body)
        with self._lock:
            self.batch_sizes.append(sum(len(r) for r in request["RequestItems"].values()))
            keep = self._unprocessed.pop(0) if self._unprocessed else None
        if keep is None:
            return body, {}
        forwarded, unprocessed = {}, {}
        for table, requests in request["RequestItems"].items():
            if requests[:keep]:
                forwarded[table] = requests[:keep]
            if requests[keep:]:
                unprocessed[table] = requests[keep:]
            keep = max(0, keep - len(requests))
        return json.dumps({**request, "RequestItems": forwarded}).encode(), unprocessed

    def _handler(self):
        front = self

        class Handler(FrontHandler):
            def do_POST(self):
                body = self.read_body()
                target = self.headers.get("X-Amz-Target", "")
                if target:
                    front.targets.append(target)
                body, unprocessed = front._stage(target, body)
                if unprocessed and not json.loads(body)["RequestItems"]:
                    status, answer, reply_headers = 200, b"{}", {"Content-Type": "application/x-amz-json-1.0"}
                else:
                    status, answer, reply_headers = self.forward(front.upstream + self.path, body,
                                                                 front.timeout)
                if unprocessed and status == 200:
                    answer = json.dumps({**json.loads(answer or b"{}"), "UnprocessedItems": unprocessed}).encode()
                self.send_back(status, answer, reply_headers, drop=("x-amz-crc32", "date", "server"))

            def do_GET(self):  # S3 reads pass through unchanged
                status, answer, reply_headers = self.forward(front.upstream + self.path, None,
                                                             front.timeout, method="GET")
                self.send_back(status, answer, reply_headers)

        return Handler
