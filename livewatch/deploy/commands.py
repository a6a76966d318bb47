"""`livewatch gen-templates | deploy | destroy`, added through the `register_commands` hook.

troposphere and boto3 are imported inside the commands, so `livewatch --help` stays fast.
"""
from __future__ import annotations

import re
from pathlib import Path

import click

from livewatch.hookspecs import hookimpl
from templates_gen import STACK_KEYS

PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")  # templates_gen.common.PROJECT_PATTERN


def _project(ctx, param, value: str) -> str:
    if not PROJECT_RE.match(value):
        raise click.BadParameter("lower-case letters, digits and '-', starting with a letter, at most 20")
    return value


def _parameters(ctx, param, values: tuple[str, ...]) -> dict[str, dict[str, str]]:
    parsed: dict[str, dict[str, str]] = {}
    for item in values:
        match = re.match(r"^([a-z]+)\.([A-Za-z0-9]+)=(.*)$", item)
        if not match:
            raise click.BadParameter(
                f"{item!r}: use STACK.NAME=VALUE, e.g. model.InstanceType=ml.g4dn.xlarge")
        parsed.setdefault(match[1], {})[match[2]] = match[3]
    return parsed


def _build_args(ctx, param, values: tuple[str, ...]) -> dict[str, str]:
    parsed = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise click.BadParameter(f"{item!r}: use NAME=VALUE")
        parsed[key] = value
    return parsed


project_option = click.option(
    "--project", default="livewatch", show_default=True, envvar="LIVEWATCH_PROJECT", callback=_project,
    help="Prefix of the stack names (<project>-<stack>), resource names and exports.")
region_option = click.option(
    "--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the profile's).")
stack_option = click.option(
    "--stack", "stack_keys", multiple=True, type=click.Choice(STACK_KEYS),
    help="Only this stack (repeat for several); default: all, in dependency order.")
timeout_option = click.option("--timeout", type=click.FloatRange(min=1), default=90, show_default=True,
                              help="Minutes to wait for one stack before giving up.")
poll_option = click.option("--poll", type=click.FloatRange(min=0), default=10.0, hidden=True,
                           help="Seconds between progress checks.")


@click.command("gen-templates")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write <stack>.json (or .yaml) into; created if missing.")
@click.option("--format", "fmt", type=click.Choice(["json", "yaml"]), default="json", show_default=True)
@stack_option
def gen_templates(out: Path, fmt: str, stack_keys: tuple[str, ...]):
    """Write the CloudFormation templates, one file per stack.

    Deploy them in the order printed; each imports the exports of those before it.
    """
    from templates_gen import STACKS

    out.mkdir(parents=True, exist_ok=True)
    for spec in (s for s in STACKS if not stack_keys or s.key in stack_keys):
        template = spec.template()
        path = out / f"{spec.key}.{fmt}"
        path.write_text(template.to_yaml() if fmt == "yaml" else template.to_json() + "\n")
        click.echo(f"{path}  ({spec.summary})")


@click.command()
@project_option
@region_option
@stack_option
@click.option("-p", "--parameter", "parameters", multiple=True, callback=_parameters,
              metavar="STACK.NAME=VALUE",
              help="Set a stack parameter, e.g. -p model.InstanceType=ml.g4dn.xlarge (repeatable); "
                   "parameters not given keep their current value.")
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path),
              help="model.tar.gz to serve (required the first time); uploaded to the artifact bucket.")
@click.option("--video", type=click.Path(dir_okay=False, path_type=Path),
              help="MP4 for MediaLive to loop as the live stream; uploaded to the artifact bucket.")
@click.option("--build-image", is_flag=True,
              help="Build the daemon image from this checkout's Dockerfile, push it to ECR (creating the "
                   "repository if needed) and run it in the fleet: tags are the version and the git commit.")
@click.option("--image-tool", type=click.Choice(["docker", "podman", "buildah"]),
              help="Container tool for --build-image (default: the first installed and working).")
@click.option("--build-arg", "build_args", multiple=True, callback=_build_args, metavar="NAME=VALUE",
              help="Build argument for --build-image, e.g. BASE=registry.example.com/python:3.11-slim (repeatable).")
@click.option("--build-secret", "build_secrets", multiple=True, metavar="id=ID,src=PATH",
              help="Build secret for --build-image: id=ca-bundle (a CA bundle) or id=pip-conf (a pip.conf "
                   "for a private index), never stored in the image (repeatable).")
@click.option("--push-to", metavar="DESTINATION",
              help="With podman or buildah: push the image here instead of ECR, e.g. oci-archive:livewatch.tar "
                   "(the fleet still gets its tag).")
@timeout_option
@poll_option
def deploy(project, region, stack_keys, parameters, model, video, build_image, image_tool, build_args,
           build_secrets, push_to, timeout, poll):
    """Create or update the stacks in dependency order and wait for each.

    Uploads the model package and the demo video, prints what was created and how to start the
    channel. Safe to re-run: unchanged stacks are left as they are. With --build-image, builds and
    pushes the daemon's image first; without a container tool it prints the commands to run.
    """
    from .image import ImageOptions
    from .rollout import DeployPlan, summary
    from .rollout import deploy as run_deploy
    from .session import aws_session, describe_target
    from .stacks import Stacks

    session = aws_session(region)
    click.echo(f"deploying {project} to {describe_target(session)}")
    plan = DeployPlan(project=project, stacks=stack_keys or STACK_KEYS, parameters=parameters,
                      model=model, video=video)
    if build_image:
        plan.image = ImageOptions(tool=image_tool, build_args=build_args, secrets=list(build_secrets),
                                  push_to=push_to)
    elif image_tool or build_args or build_secrets or push_to:
        raise click.UsageError("--image-tool, --build-arg, --build-secret and --push-to go with --build-image")
    stacks = Stacks(session, click.echo, poll=poll, timeout=timeout * 60)
    outputs = run_deploy(session, plan, stacks, click.echo)
    for line in summary(outputs, project, session.region_name):
        click.echo(line)


@click.command()
@project_option
@region_option
@stack_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@timeout_option
@poll_option
def destroy(project, region, stack_keys, yes, timeout, poll):
    """Stop the channel, empty the buckets and delete the stacks in reverse order.

    Everything goes: segments, model packages, the detections table. Safe to re-run. The ECR
    repository of the fleet's image stays (deploy --build-image made it); destroy says how to remove it.
    """
    from .session import aws_session, describe_target
    from .stacks import Stacks
    from .teardown import destroy as run_destroy

    keys = stack_keys or STACK_KEYS
    session = aws_session(region)
    target = describe_target(session)
    names = ", ".join(f"{project}-{k}" for k in reversed(STACK_KEYS) if k in keys)
    if not yes:
        click.confirm(f"Delete {names} in {target}, with everything in them?", abort=True)
    click.echo(f"destroying {project} in {target}")
    stacks = Stacks(session, click.echo, poll=poll, timeout=timeout * 60)
    run_destroy(session, project, keys, stacks, click.echo)
    click.echo("done")


@hookimpl
def register_commands(cli):
    for command in (gen_templates, deploy, destroy):
        cli.add_command(command)
