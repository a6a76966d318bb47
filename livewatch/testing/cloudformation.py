"""A local CloudFormation front for the deploy tests: forwards every request to an emulator (moto,
which settles every stack at once) and stages the slow part of the real service over real HTTP:
the statuses a stack goes through, one per DescribeStacks, with their stack events, and a failed
resource with its reason.

    with CloudFormationFront(moto_server.endpoint_url) as front:
        front.stage(["CREATE_IN_PROGRESS", "CREATE_IN_PROGRESS", "CREATE_COMPLETE"])
        Stacks(boto3.Session(), print, poll=0)  # with AWS_ENDPOINT_URL_CLOUDFORMATION=front.endpoint_url
    front.actions   # the API actions called, in order
"""
from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .aws import free_port

_HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "expect"}


class CloudFormationFront:
    def __init__(self, upstream: str, *, timeout: float = 30.0):
        self.upstream, self.timeout = upstream.rstrip("/"), timeout
        self.actions: list[str] = []
        self._lock = threading.Lock()
        self._statuses: list[str] = []
        self._armed_by: str | None = None  # the action that starts the staged statuses
        self._until: str | None = None  # the action that ends them
        self._armed = False
        self._failure: tuple[str, str, str] | None = None
        self._events: list[str] = []  # staged <member> elements, newest first
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler())
        self.server.daemon_threads = True

    @property
    def endpoint_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def stage(self, statuses: list[str], *, after: str | None = "CreateStack",
              until: str | None = None, failure: tuple[str, str, str] | None = None) -> None:
        """From the next `after` action (None: now) until the next `until` action (None: for
        good), DescribeStacks answers `statuses`, one per call (the last one repeats), each with
        its stack event; `failure` = (logical id, resource type, reason): a *_FAILED event for that
        resource when a ROLLBACK_* status is reached."""
        with self._lock:
            self._statuses, self._armed_by, self._until = list(statuses), after, until
            self._armed, self._failure, self._events = after is None, failure, []

    def start(self) -> "CloudFormationFront":
        threading.Thread(target=self.server.serve_forever, name="cfn-front", daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "CloudFormationFront":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- staging ---------------------------------------------------------------------------------

    def _before(self, action: str) -> None:
        with self._lock:
            self.actions.append(action)
            if self._armed and action == self._until:
                self._armed = False

    def _after(self, action: str) -> None:
        with self._lock:
            if not self._armed and self._statuses and action == self._armed_by:
                self._armed = True

    def _next_status(self, stack: str, stack_id: str) -> str | None:
        with self._lock:
            if not self._armed:
                return None
            status = self._statuses.pop(0) if len(self._statuses) > 1 else self._statuses[0]
            self._event(stack, stack_id, stack, "AWS::CloudFormation::Stack", status, "")
            if self._failure and status.startswith("ROLLBACK_"):
                logical_id, resource_type, reason = self._failure
                self._event(stack, stack_id, logical_id, resource_type, "CREATE_FAILED", reason)
                self._failure = None
            return status

    def _event(self, stack, stack_id, logical_id, resource_type, status, reason) -> None:
        n = len(self._events)
        self._events.insert(0, (
            f"<member><StackId>{escape(stack_id)}</StackId><EventId>front-{n}</EventId>"
            f"<StackName>{escape(stack)}</StackName><LogicalResourceId>{escape(logical_id)}"
            f"</LogicalResourceId><PhysicalResourceId>{escape(logical_id)}</PhysicalResourceId>"
            f"<ResourceType>{escape(resource_type)}</ResourceType>"
            f"<Timestamp>2030-01-01T00:00:{n:02d}.000Z</Timestamp>"
            f"<ResourceStatus>{escape(status)}</ResourceStatus>"
            + (f"<ResourceStatusReason>{escape(reason)}</ResourceStatusReason>" if reason else "")
            + "</member>"))

    def _rewrite(self, action: str, answer: str) -> str:
        if action == "DescribeStacks" and "<StackStatus>" in answer:
            name = answer.split("<StackName>", 1)[1].split("</StackName>", 1)[0]
            stack_id = answer.split("<StackId>", 1)[1].split("</StackId>", 1)[0]
            status = self._next_status(name, stack_id)
            if status:
                head, rest = answer.split("<StackStatus>", 1)
                answer = f"{head}<StackStatus>{status}</StackStatus>{rest.split('</StackStatus>', 1)[1]}"
        if action == "DescribeStackEvents":
            with self._lock:
                staged = "".join(self._events)
            if staged and "<StackEvents>" in answer:
                answer = answer.replace("<StackEvents>", "<StackEvents>" + staged, 1)
        return answer

    def _handler(self):
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = urllib.parse.parse_qs(body.decode()).get("Action", [""])[0]
                front._before(action)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                request = urllib.request.Request(front.upstream + self.path, data=body, method="POST",
                                                 headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=front.timeout) as response:
                        status, answer, reply = response.status, response.read(), response.headers
                except urllib.error.HTTPError as exc:
                    status, answer, reply = exc.code, exc.read(), exc.headers
                if status == 200:
                    front._after(action)
                    answer = front._rewrite(action, answer.decode()).encode()
                self.send_response(status)
                for k, v in dict(reply).items():
                    if k.lower() not in _HOP_BY_HOP and k.lower() not in ("date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        return Handler
