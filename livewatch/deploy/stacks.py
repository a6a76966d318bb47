"""Create-or-update and delete one CloudFormation stack, waiting with progress.

Safe to re-run: an existing stack is updated ("No updates are to be performed" is success), a stack
left in ROLLBACK_COMPLETE by a failed first create is deleted and created again, and deleting a
stack that is already gone does nothing. A failure names the resources that failed and why.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable

from livewatch.errors import LivewatchError

from .session import aws_errors, error_code

MAX_TEMPLATE_BODY = 51_200  # CloudFormation's limit for a template passed inline
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
SETTLED_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}


class Stacks:
    """CloudFormation operations for the deploy commands; `echo` prints progress lines."""

    def __init__(self, session, echo: Callable[[str], None], *, poll: float = 5.0, timeout: float = 3600.0):
        self.cfn = session.client("cloudformation")
        self.echo = echo
        self.poll = poll
        self.timeout = timeout

    def describe(self, name: str) -> dict | None:
        """The stack (as DescribeStacks returns it), or None if there is none by that name."""
        from botocore.exceptions import ClientError

        with aws_errors():
            try:
                stacks = self.cfn.describe_stacks(StackName=name)["Stacks"]
            except ClientError as exc:
                if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
                    return None
                raise
        return stacks[0] if stacks and stacks[0]["StackStatus"] != "DELETE_COMPLETE" else None

    def deploy(self, name: str, template: dict, parameters: dict[str, str], tags: dict[str, str]) -> dict:
        """Create or update stack `name`; return it once settled. Parameters not given keep the
        value the stack already has (or the template's default for a new stack)."""
        from botocore.exceptions import ClientError

        body = json.dumps(template, separators=(",", ":"))
        if len(body) > MAX_TEMPLATE_BODY:
            raise LivewatchError(f"{name}: template is {len(body)} bytes, over CloudFormation's "
                                 f"{MAX_TEMPLATE_BODY}")
        stack = self.describe(name)
        if stack and stack["StackStatus"].endswith("_IN_PROGRESS"):
            self.echo(f"{name}: {stack['StackStatus']}, waiting for it to settle")
            stack = self._settle(stack["StackId"], set())
        if stack and stack["StackStatus"] == "ROLLBACK_COMPLETE":
            self.echo(f"{name}: the last create failed and rolled back; deleting it to start again")
            self.delete(name)
            stack = None
        previous = {p["ParameterKey"] for p in (stack or {}).get("Parameters", [])}
        params = []
        for key in template.get("Parameters", {}):
            if key in parameters:
                params.append({"ParameterKey": key, "ParameterValue": str(parameters[key])})
            elif key in previous:
                params.append({"ParameterKey": key, "UsePreviousValue": True})
        request = dict(StackName=name, TemplateBody=body, Parameters=params, Capabilities=CAPABILITIES,
                       Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        seen = self._event_ids(stack["StackId"]) if stack else set()
        with aws_errors():
            if stack is None:
                self.echo(f"{name}: creating")
                stack_id = self.cfn.create_stack(**request)["StackId"]
            else:
                try:
                    stack_id = self.cfn.update_stack(**request)["StackId"]
                    self.echo(f"{name}: updating")
                except ClientError as exc:
                    if "No updates are to be performed" in str(exc):
                        self.echo(f"{name}: up to date")
                        return stack
                    raise
        return self._wait(stack_id, seen, SETTLED_OK)

    def delete(self, name: str) -> bool:
        """Delete stack `name` and wait; False if there was none."""
        stack = self.describe(name)
        if stack and stack["StackStatus"].endswith("_IN_PROGRESS"):
            self.echo(f"{name}: {stack['StackStatus']}, waiting for it to settle")
            stack = self._settle(stack["StackId"], set(), by=name)
        if stack is None:
            self.echo(f"{name}: already gone")
            return False
        seen = self._event_ids(stack["StackId"])
        self.echo(f"{name}: deleting")
        with aws_errors():
            self.cfn.delete_stack(StackName=stack["StackId"])
        # Status by name: it stops existing once deleted (moto rebuilds a deleted stack's resources
        # when it is described by id).
        self._wait(stack["StackId"], seen, {"DELETE_COMPLETE"}, by=name)
        self.echo(f"{name}: deleted")
        return True

    @staticmethod
    def outputs(stack: dict | None) -> dict[str, str]:
        return {o["OutputKey"]: o["OutputValue"] for o in (stack or {}).get("Outputs", [])}

    def _settle(self, stack_id: str, seen: set[str], by: str | None = None) -> dict | None:
        """Wait until the stack is in no *_IN_PROGRESS state, printing its new events; None once
        it is deleted. `by` (a name) looks the status up by name instead of id."""
        deadline = time.monotonic() + self.timeout
        while True:
            stack = self._describe_id(by or stack_id)
            self._print_events(stack_id, seen)
            if stack is None or not stack["StackStatus"].endswith("_IN_PROGRESS"):
                return stack
            if time.monotonic() > deadline:
                raise LivewatchError(f"{stack['StackName']}: still {stack['StackStatus']} after "
                                     f"{self.timeout / 60:.0f} min (CloudFormation goes on; run the command "
                                     f"again to keep waiting)")
            try:
                time.sleep(self.poll)
            except KeyboardInterrupt:
                raise LivewatchError(f"{stack['StackName']}: interrupted while {stack['StackStatus']}; "
                                     f"CloudFormation goes on (run the command again to follow it)") from None

    def _wait(self, stack_id: str, seen: set[str], ok: set[str], by: str | None = None) -> dict | None:
        """`_settle`, then raise unless the stack ended in one of the `ok` states."""
        stack = self._settle(stack_id, seen, by)
        status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
        if status in ok:
            if stack:
                self.echo(f"{stack['StackName']}: {status}")
            return stack
        name = stack["StackName"] if stack else stack_id
        reasons = self._failures(stack_id)
        detail = ("; ".join(reasons[:3]) if reasons
                  else (stack or {}).get("StackStatusReason", "no reason given"))
        raise LivewatchError(f"{name}: {status}: {detail}")

    def _describe_id(self, stack_id: str) -> dict | None:  # an id or a name
        from botocore.exceptions import ClientError

        with aws_errors():
            try:
                stack = self.cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
            except ClientError as exc:
                if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
                    return None
                raise
        return None if stack["StackStatus"] == "DELETE_COMPLETE" else stack

    def _events(self, stack_id: str) -> list[dict]:
        """The stack's events, newest first (the first page is enough for one operation's progress)."""
        from botocore.exceptions import ClientError

        with aws_errors():
            try:
                return self.cfn.describe_stack_events(StackName=stack_id).get("StackEvents", [])
            except ClientError as exc:
                if error_code(exc) == "ValidationError":
                    return []  # deleted and forgotten
                raise

    def _event_ids(self, stack_id: str) -> set[str]:
        return {e["EventId"] for e in self._events(stack_id)}

    def _print_events(self, stack_id: str, seen: set[str]) -> None:
        for event in reversed(self._events(stack_id)):
            if event["EventId"] in seen:
                continue
            seen.add(event["EventId"])
            when = event["Timestamp"].strftime("%H:%M:%S")
            reason = f"  {event['ResourceStatusReason']}" if event.get("ResourceStatusReason") else ""
            self.echo(f"  {when} {event['ResourceStatus']:<22} {event.get('ResourceType', ''):<42} "
                      f"{event['LogicalResourceId']}{reason}")

    def _failures(self, stack_id: str) -> list[str]:
        failed = [e for e in reversed(self._events(stack_id))
                  if e["ResourceStatus"].endswith("_FAILED") and e.get("ResourceStatusReason")
                  and "cancelled" not in e["ResourceStatusReason"]]
        return [f"{e['LogicalResourceId']}: {e['ResourceStatusReason']}" for e in failed]
