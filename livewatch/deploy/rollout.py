"""`livewatch deploy`: check, upload, then create or update the stacks in dependency order."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from livewatch.errors import ConfigError

from . import uploads
from .image import ImageOptions
from .stacks import Stacks


@dataclass
class DeployPlan:
    project: str
    stacks: tuple[str, ...]  # stack keys to deploy; the others are only read
    parameters: dict[str, dict[str, str]] = field(default_factory=dict)  # stack key -> name -> value
    model: Path | None = None
    video: Path | None = None
    image: ImageOptions | None = None  # --build-image: build and push it, run its tag in the fleet


def deploy(session, plan: DeployPlan, stacks: Stacks,
           echo: Callable[[str], None]) -> dict[str, dict[str, str]]:
    """Deploy `plan`; return every stack's outputs (keyed by stack key) afterwards."""
    from templates_gen import STACKS

    selected = [spec for spec in STACKS if spec.key in plan.stacks]
    templates = {spec.key: spec.template().to_dict() for spec in selected}
    _check_parameters(plan.parameters, templates)
    existing = {spec.key: stacks.describe(spec.stack_name(plan.project)) for spec in STACKS}
    _preflight(session, plan, templates, existing)
    if plan.image is not None:
        _publish_image(session, plan, templates, existing, echo)

    outputs = {key: Stacks.outputs(stack) for key, stack in existing.items()}
    parameters = {key: dict(plan.parameters.get(key, {})) for key in templates}
    tags = {"Project": plan.project, "ManagedBy": "livewatch"}

    def upload_artifacts() -> None:
        bucket = outputs["storage"].get("ArtifactBucketName")
        if not (plan.model or plan.video or "livestream" in templates):
            return
        if not bucket:
            raise ConfigError(f"no artifact bucket: deploy the storage stack ({plan.project}-storage) first")
        s3 = session.client("s3")
        if plan.model:
            key = uploads.upload(s3, plan.model, bucket, uploads.model_key(plan.model), echo,
                                 skip_if_present=True)
            if "model" in parameters:
                parameters["model"]["ModelDataKey"] = key
        if plan.video:
            uploads.upload(s3, plan.video, bucket, uploads.VIDEO_KEY, echo)
        elif "livestream" in templates and not uploads.exists(s3, bucket, uploads.VIDEO_KEY):
            echo(f"note: no demo video at s3://{bucket}/{uploads.VIDEO_KEY}; the channel cannot start until "
                 f"one is there (livewatch deploy --video clip.mp4)")

    if "storage" not in templates:
        upload_artifacts()
    for spec in selected:
        params = {"Project": plan.project, **parameters[spec.key]}
        stack = stacks.deploy(spec.stack_name(plan.project), templates[spec.key], params, tags)
        outputs[spec.key] = Stacks.outputs(stack)
        if spec.key == "storage":
            upload_artifacts()
    return outputs


def _check_parameters(parameters: dict[str, dict[str, str]], templates: dict[str, dict]) -> None:
    for key, values in parameters.items():
        if key not in templates:
            raise ConfigError(f"-p {key}.…: stack {key!r} is not being deployed "
                              f"(stacks: {', '.join(templates)})")
        known = templates[key].get("Parameters", {})
        for name in values:
            if name not in known or name == "Project":
                raise ConfigError(f"-p {key}.{name}: no such parameter; {key} takes "
                                  f"{', '.join(k for k in known if k != 'Project')}")


def _preflight(session, plan: DeployPlan, templates: dict[str, dict],
               existing: dict[str, dict | None]) -> None:
    """Everything that can be checked before anything is created."""
    if plan.model:
        uploads.check_model_package(plan.model)
    if plan.video:
        uploads.check_video(plan.video)
    if "model" in templates and not plan.model and existing["model"] is None \
            and "ModelDataKey" not in plan.parameters.get("model", {}):
        raise ConfigError("the model stack is new: give the model package to serve with "
                          "--model path/to/model.tar.gz")
    if plan.image is not None and "fleet" not in templates:
        raise ConfigError("--build-image builds the fleet's image: deploy the fleet stack too (--stack fleet)")
    if "fleet" in templates:
        repository = _effective(plan, templates, existing, "fleet", "ImageRepository")
        tag = _effective(plan, templates, existing, "fleet", "ImageTag")
        if plan.image is None:  # else deploy builds and pushes it before the fleet is updated
            uploads.check_image(session.client("ecr"), repository, tag)
        if _effective(plan, templates, existing, "fleet", "Subnets") is None:
            vpc, subnets = default_network(session.client("ec2"))
            fleet = plan.parameters.setdefault("fleet", {})
            fleet.setdefault("VpcId", vpc)
            fleet["Subnets"] = ",".join(subnets)


def _publish_image(session, plan: DeployPlan, templates: dict[str, dict],
                   existing: dict[str, dict | None], echo: Callable[[str], None]) -> None:
    from .image import publish

    repository = _effective(plan, templates, existing, "fleet", "ImageRepository")
    tag = publish(session, repository, plan.project, plan.image, echo)
    plan.parameters.setdefault("fleet", {})["ImageTag"] = tag


def _effective(plan, templates, existing, key: str, name: str) -> str | None:
    """A parameter's value after deploy: given with -p, else the stack's current one, else the
    template's default (None if it has none)."""
    if name in plan.parameters.get(key, {}):
        return plan.parameters[key][name]
    for p in (existing.get(key) or {}).get("Parameters", []):
        if p["ParameterKey"] == name:
            return p["ParameterValue"]
    default = templates[key]["Parameters"][name].get("Default")
    return None if default is None else str(default)


def default_network(ec2) -> tuple[str, list[str]]:
    """The region's default VPC and its default subnets (one per zone), for the fleet."""
    from .session import aws_errors

    with aws_errors():
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        if vpcs:
            vpc = vpcs[0]["VpcId"]
            subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                    {"Name": "default-for-az", "Values": ["true"]}])
            subnets = subnets["Subnets"]
            if subnets:
                return vpc, sorted(s["SubnetId"] for s in subnets)
    raise ConfigError("no default VPC with subnets in this region for the daemons: pass "
                      "-p fleet.VpcId=vpc-... -p fleet.Subnets=subnet-a,subnet-b "
                      "(and -p fleet.AssignPublicIp=DISABLED for private subnets behind a NAT gateway)")


def summary(outputs: dict[str, dict[str, str]], project: str, region: str) -> list[str]:
    """What was created, and what to do next."""
    lines = ["", "Stacks and their outputs:"]
    for key, values in outputs.items():
        if values:
            lines.append(f"  {project}-{key}")
            lines += [f"    {name:<22} {value}" for name, value in values.items()]
    lines += ["", "Next:"]
    channel = outputs.get("livestream", {}).get("ChannelId")
    storage = outputs.get("storage", {})
    stream = outputs.get("livestream", {}).get("StreamName")
    if channel:
        lines.append(f"  start the stream:    aws medialive start-channel --channel-id {channel} "
                     f"--region {region}")
        lines.append(f"  stop it:             aws medialive stop-channel --channel-id {channel} "
                     f"--region {region}")
    elif outputs.get("livestream") is not None and stream:
        lines.append("  (no MediaLive channel id in the livestream stack's outputs: "
                     "start the channel from the console)")
    if stream and storage.get("LivestreamBucketName"):
        lines.append(f"  segments appear at:  s3://{storage['LivestreamBucketName']}/"
                     f"{storage.get('SegmentPrefix', '')}{stream}/")
    if outputs.get("fleet", {}).get("LogGroupName"):
        lines.append(f"  follow the daemons:  aws logs tail {outputs['fleet']['LogGroupName']} --follow "
                     f"--region {region}")
    if outputs.get("results", {}).get("TableName"):
        lines.append(f"  detections table:    {outputs['results']['TableName']}")
    topic = outputs.get("results", {}).get("EventsTopicArn")
    if topic:
        lines.append(f"  event changes:       aws sns subscribe --topic-arn {topic} --protocol email "
                     f"--notification-endpoint you@example.com --region {region}")
    lines.append(f"  remove everything:   livewatch destroy --project {project}")
    return lines
