"""What every stack shares: the `Project` parameter, cross-stack export names, tags, IAM helpers.

Stacks find each other through CloudFormation exports named ``<Project>-<stack key>-<output>``
(e.g. ``livewatch-storage-QueueUrl``), so a stack imports what it needs without knowing the other
stack's name, and two projects can live side by side in one account and region.
"""
from __future__ import annotations

from typing import Any

from troposphere import Equals, Export, ImportValue, Not, Output, Parameter, Ref, Sub, Tags, Template

PROJECT = "Project"
DEFAULT_PROJECT = "livewatch"
#: Lower case because bucket names are built from it; short enough for a 63-character bucket name.
PROJECT_PATTERN = r"^[a-z][a-z0-9-]{0,19}$"

#: The SageMaker endpoint's only variant; the autoscaling target names it.
VARIANT_NAME = "AllTraffic"


def new_template(description: str) -> Template:
    """A template with a description and the `Project` parameter every stack has."""
    t = Template(Description=description)
    t.set_version("2010-09-09")
    t.add_parameter(Parameter(
        PROJECT, Type="String", Default=DEFAULT_PROJECT, AllowedPattern=PROJECT_PATTERN,
        Description="Prefix of every name and export, so several deployments can share an account",
        ConstraintDescription="lower-case letters, digits and '-', starting with a letter, at most 20",
    ))
    return t


def parameter(t: Template, name: str, description: str, default: Any, **kwargs) -> Ref:
    """Add a parameter (Number for an int default, else String, unless `Type=` is given; no
    default if `default` is None); return a Ref to it."""
    kwargs.setdefault("Type", "Number" if isinstance(default, int) else "String")
    if default is not None:
        kwargs["Default"] = default
    t.add_parameter(Parameter(name, Description=description, **kwargs))
    return Ref(name)


def optional_kms_key(t: Template, name: str, what: str, grants: str,
                     otherwise: str = "the AWS-owned key") -> tuple[str, Ref]:
    """An opt-in customer managed KMS key: a String parameter `name` (default empty: the service's
    own key, `otherwise`) and a condition ``<name>Given``; returns (condition name, Ref to the key
    ARN). Use ``If(condition, key, NoValue)`` where the key goes."""
    t.add_parameter(Parameter(
        name, Type="String", Default="", AllowedPattern=r"^(arn:aws[a-z-]*:kms:\S+)?$",
        Description=f"Optional ARN of a customer managed KMS key for {what} (empty: {otherwise}); "
                    f"its key policy must allow {grants}",
        ConstraintDescription="empty, or the ARN of a KMS key"))
    condition = f"{name}Given"
    t.add_condition(condition, Not(Equals(Ref(name), "")))
    return condition, Ref(name)


def export_name(stack: str, output: str) -> Sub:
    return Sub(f"${{{PROJECT}}}-{stack}-{output}")


def output(t: Template, stack: str, name: str, value, description: str, export: bool = True) -> None:
    """An output that other stacks can import as ``import_value(stack, name)`` (unless `export` is
    false: a value built from another stack's export is for people, not re-exported)."""
    extra = {"Export": Export(export_name(stack, name))} if export else {}
    t.add_output(Output(name, Value=value, Description=description, **extra))


def import_value(stack: str, name: str) -> ImportValue:
    return ImportValue(export_name(stack, name))


def name(suffix: str) -> Sub:
    """``<Project>-<suffix>``: the name of a named resource (a table, an endpoint, a cluster)."""
    return Sub(f"${{{PROJECT}}}-{suffix}")


def bucket_name(purpose: str) -> Sub:
    """A globally unique bucket name: ``<Project>-<purpose>-<account>-<region>``."""
    return Sub(f"${{{PROJECT}}}-{purpose}-${{AWS::AccountId}}-${{AWS::Region}}")


def bucket_arn(bucket_name_value, path: str = "") -> Sub:
    """``arn:<partition>:s3:::<bucket><path>`` for a bucket name (a string or an intrinsic)."""
    return Sub(f"arn:${{AWS::Partition}}:s3:::${{Bucket}}{path}", Bucket=bucket_name_value)


def arn(service: str, resource: str, **values) -> Sub:
    """``arn:<partition>:<service>:<region>:<account>:<resource>`` (resource may use ${...})."""
    return Sub(f"arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{resource}", **values)


def statement(actions: list[str], resources: list, **extra) -> dict:
    """An Allow statement; name resources by ARN. ``Resource: "*"`` only for actions that have no
    resource-level permissions (the template tests hold a list of those)."""
    return {"Effect": "Allow", "Action": sorted(actions), "Resource": resources, **extra}


def policy_document(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def assume_role(service: str, **condition) -> dict:
    """A trust policy for one AWS service; `condition` limits it (confused-deputy protection)."""
    stmt = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if condition:
        stmt["Condition"] = condition
    return policy_document(stmt)


def tag_everything(t: Template, component: str) -> Template:
    """Tag every resource that takes tags: Project, Component, ManagedBy.

    Most types take a list of Key/Value pairs; a few (MediaLive) take a plain map.
    """
    values = {"Project": Ref(PROJECT), "Component": component, "ManagedBy": "livewatch"}
    for resource in t.resources.values():
        kind = resource.props.get("Tags", (None,))[0]
        if kind is None or "Tags" in resource.properties:
            continue
        resource.Tags = dict(values) if kind is dict else Tags(**values)
    return t
