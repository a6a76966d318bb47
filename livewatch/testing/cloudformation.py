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
import urllib.parse
from html import escape

from .http_front import FrontHandler, HttpFront


class CloudFormationFront(HttpFront):
    thread_name = "cfn-front"

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
        super().__init__()

    def stage(self, statuses: list[str], *, after: str | None = "CreateStack",
              until: str | None = None, failure: tuple[str, str, str] | None = None) -> None:
        """From the next `after` action (None: now) until the next `until` action (None: for
        good), DescribeStacks answers `statuses`, one per call (the last one repeats), each with
        its stack event; `failure` = (logical id, resource type, reason): a *_FAILED event for that
        resource when a ROLLBACK_* status is reached."""
        with self._lock:
            self._statuses, self._armed_by, self._until = list(statuses), after, until
            self._armed, self._failure, self._events = after is None, failure, []

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

        class Handler(FrontHandler):
            def do_POST(self):
                body = self.read_body()
                action = urllib.parse.parse_qs(body.decode()).get("Action", [""])[0]
                front._before(action)
                status, answer, reply = self.forward(front.upstream + self.path, body, front.timeout)
                if status == 200:
                    front._after(action)
                    answer = front._rewrite(action, answer.decode()).encode()
                self.send_back(status, answer, reply)

        return Handler
