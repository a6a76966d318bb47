"""livewatch's CloudFormation stacks, generated with troposphere: one module per stack.

`STACKS` lists them in dependency order (each imports only from stacks before it); deploy walks it
forwards and destroy backwards. Importing this package is cheap: a stack's module, and troposphere,
load only when its template is built.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class StackSpec:
    key: str  # the stack's short name: "<Project>-<key>" is its stack name, and its exports' prefix
    module: str
    summary: str

    def template(self):
        """The stack's `troposphere.Template`."""
        return importlib.import_module(self.module).template()

    def stack_name(self, project: str) -> str:
        return f"{project}-{self.key}"


STACKS: tuple[StackSpec, ...] = (
    StackSpec("storage", "templates_gen.storage_events",
              "livestream bucket, .ts notifications to SQS with a dead-letter queue, artifact bucket"),
    StackSpec("results", "templates_gen.results", "DynamoDB detections table"),
    StackSpec("model", "templates_gen.model", "SageMaker model, endpoint and its autoscaling"),
    StackSpec("livestream", "templates_gen.livestream", "MediaLive input and channel writing HLS to S3"),
    StackSpec("fleet", "templates_gen.fleet", "livewatch daemons on ECS Fargate, scaled on the queue"),
)

STACK_KEYS: tuple[str, ...] = tuple(s.key for s in STACKS)


def get_stack(key: str) -> StackSpec:
    for spec in STACKS:
        if spec.key == key:
            return spec
    raise KeyError(f"unknown stack {key!r}; stacks: {', '.join(STACK_KEYS)}")
