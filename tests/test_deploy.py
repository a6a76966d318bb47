"""`livewatch deploy` and `destroy` against a local moto server, run as a user runs them.

What moto's CloudFormation creates, and so what this file checks end to end: S3 buckets, SQS queues
with their redrive policy, the DynamoDB table (with its local secondary index), the SNS topic, IAM
roles, the SageMaker model, endpoint config and endpoint, the ECS cluster, task definition and
service, the security group and the log group; the exports and imports between the stacks. What it
skips, and tests/test_templates.py checks in the templates only, is `TEMPLATE_ONLY` below.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import botocore.config
import click
import pytest
from click.testing import CliRunner

from livewatch.deploy.commands import register_commands
from livewatch.deploy.stacks import Stacks
from livewatch.deploy.teardown import stop_channel
from livewatch.errors import LivewatchError
from livewatch.sinks.dynamodb import table_problem
from templates_gen import STACKS

ORDER = [s.key for s in STACKS]

#: Resource types moto's CloudFormation silently skips, and the template test that covers each.
TEMPLATE_ONLY = {
    "AWS::SQS::QueuePolicy": "test_queue_policy_lets_only_that_bucket_send",
    "AWS::S3::BucketPolicy": "test_buckets_are_private_encrypted_and_tls_only",
    # These four are also validated against the service's API model (test_properties_match_the_service_api).
    "AWS::MediaLive::Input": "test_medialive_writes_10s_segments_of_the_looped_video_under_the_stream",
    "AWS::MediaLive::Channel": "test_medialive_writes_10s_segments_of_the_looped_video_under_the_stream",
    "AWS::ApplicationAutoScaling::ScalableTarget":
        "test_endpoint_autoscaling_target_names_the_endpoints_variant",
    "AWS::ApplicationAutoScaling::ScalingPolicy": "test_fleet_scales_on_the_queue_backlog_per_task",
}
# Also not applied by moto although the bucket is created: its NotificationConfiguration
# (test_notification_sends_only_ts_segments_to_the_queue) and its LifecycleConfiguration.


LIVEWATCH = str(Path(sys.executable).with_name("livewatch"))


def lw(env: dict, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([LIVEWATCH, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def model_tar(tmp_path) -> Path:
    """A model.tar.gz laid out as SageMaker's MXNet container wants it (contents are not used)."""
    root = tmp_path / "pkg"
    (root / "code").mkdir(parents=True)
    for name, text in (("model-symbol.json", "{}"), ("model-0000.params", "x"), ("classes.txt", "a\nb\n"),
                       ("code/inference.py", "")):
        (root / name).write_text(text)
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
    return archive


@pytest.fixture
def pushed_image(aws_env):
    """The livewatch image in the emulator's ECR, as deploy checks before creating the fleet."""
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="livewatch")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                           "digest": "sha256:" + "0" * 64}, "layers": []}
    ecr.put_image(repositoryName="livewatch", imageTag="latest", imageManifest=json.dumps(manifest))


def outputs(cfn, key: str, project: str = "livewatch") -> dict[str, str]:
    [stack] = cfn.describe_stacks(StackName=f"{project}-{key}")["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def lines_with(text: str, suffix: str) -> list[str]:
    """The stack keys of the progress lines ``livewatch-<key>: ...<suffix>``, in order."""
    return [line.split(":")[0].removeprefix("livewatch-") for line in text.splitlines()
            if line.endswith(suffix)]


@pytest.mark.slow
def test_deploy_then_destroy(aws_env, pushed_image, model_tar, tmp_path):
    video = tmp_path / "demo.mp4"
    video.write_bytes(b"not really a video; MediaLive is not emulated")
    deployed = lw(aws_env, "deploy", "--model", model_tar, "--video", video, "--poll", 0)
    assert deployed.returncode == 0, deployed.stderr
    assert lines_with(deployed.stdout, ": creating") == ORDER
    assert lines_with(deployed.stdout, ": CREATE_COMPLETE") == ORDER
    assert "livewatch destroy --project livewatch" in deployed.stdout

    cfn = boto3.client("cloudformation")
    out = {key: outputs(cfn, key) for key in ORDER}
    created = [cfn.describe_stacks(StackName=f"livewatch-{k}")["Stacks"][0]["CreationTime"] for k in ORDER]
    assert created == sorted(created)

    # Storage: buckets with the uploads, the queue redriving to the dead-letter queue.
    s3 = boto3.client("s3")
    artifacts = out["storage"]["ArtifactBucketName"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=artifacts)["Contents"]}
    [model_key] = [k for k in keys if k.startswith("models/")]
    assert keys == {model_key, "videos/demo.mp4"} and model_key.endswith(".tar.gz")
    s3.head_bucket(Bucket=out["storage"]["LivestreamBucketName"])
    sqs = boto3.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=out["storage"]["QueueUrl"], AttributeNames=["All"])
    redrive = json.loads(attributes["Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == out["storage"]["DeadLetterQueueArn"]

    # Results: the table with the sink's keys and its Timeline index, as the sink checks them.
    table = boto3.client("dynamodb").describe_table(TableName=out["results"]["TableName"])["Table"]
    assert {(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]} == {("Stream", "HASH"),
                                                                                ("SegmentKey", "RANGE")}
    [index] = table["LocalSecondaryIndexes"]
    assert index["IndexName"] == out["results"]["TimelineIndexName"] == "Timeline"
    assert {(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]} == {("Stream", "HASH"),
                                                                                ("When", "RANGE")}
    assert table_problem(table) is None
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    # ... and the events topic, encrypted (SNS's AWS managed key: no TopicKmsKeyArn given).
    topic = out["results"]["EventsTopicArn"]
    assert topic.endswith(":livewatch-events") and out["results"]["EventsTopicName"] == "livewatch-events"
    sns = boto3.client("sns")
    assert sns.get_topic_attributes(TopicArn=topic)["Attributes"]["KmsMasterKeyId"] == "alias/aws/sns"
    assert f"aws sns subscribe --topic-arn {topic} --protocol email" in deployed.stdout

    # Model: the endpoint serves the uploaded package through the config's only variant.
    sagemaker = boto3.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=out["model"]["EndpointName"])
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    [variant] = config["ProductionVariants"]
    assert variant["VariantName"] == out["model"]["VariantName"] == "AllTraffic"
    container = sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]
    assert container["ModelDataUrl"] == f"s3://{artifacts}/{model_key}"
    assert container["Image"] == "763104351884.dkr.ecr.us-east-1.amazonaws.com/mxnet-inference:1.9.0-cpu-py38"

    # Fleet: the daemon's configuration is the other stacks' outputs.
    ecs = boto3.client("ecs")
    task = ecs.describe_task_definition(taskDefinition=out["fleet"]["TaskDefinitionArn"])["taskDefinition"]
    env = {e["name"]: e["value"] for e in task["containerDefinitions"][0]["environment"]}
    assert env["LIVEWATCH_SOURCES__0__QUEUE_URL"] == out["storage"]["QueueUrl"]
    assert env["LIVEWATCH_SINKS__0__TABLE"] == out["results"]["TableName"]
    assert (env["LIVEWATCH_SINKS__1__TYPE"], env["LIVEWATCH_SINKS__1__TOPIC_ARN"]) == ("sns", topic)
    assert env["LIVEWATCH_CLASSIFIER__ENDPOINT_NAME"] == out["model"]["EndpointName"]
    assert env["AWS_REGION"] == "us-east-1"
    services = ecs.describe_services(cluster=out["fleet"]["ClusterName"],
                                     services=[out["fleet"]["ServiceName"]])
    assert services["services"][0]["taskDefinition"] == out["fleet"]["TaskDefinitionArn"]
    exports = {e["Name"] for e in cfn.list_exports()["Exports"]}
    assert {f"livewatch-{key}-{name}" for key in ORDER for name in out[key]} <= exports

    # What moto skipped, named so a reader knows why it is not checked here.
    made = {r["ResourceType"] for k in ORDER
            for r in cfn.list_stack_resources(StackName=f"livewatch-{k}")["StackResourceSummaries"]}
    in_templates = {r["Type"] for s in STACKS for r in s.template().to_dict()["Resources"].values()}
    assert in_templates - made == set(TEMPLATE_ONLY), "update TEMPLATE_ONLY: moto's support changed"

    again = lw(aws_env, "deploy", "--poll", 0)
    assert again.returncode == 0, again.stderr
    assert lines_with(again.stdout, ": up to date") == ORDER

    destroyed = lw(aws_env, "destroy", "--yes", "--poll", 0)
    assert destroyed.returncode == 0, destroyed.stderr
    assert lines_with(destroyed.stdout, ": deleted") == ORDER[::-1]
    assert f"s3://{artifacts}: emptied (2 object versions deleted)" in destroyed.stdout
    assert not cfn.describe_stacks()["Stacks"]
    assert not s3.list_buckets()["Buckets"]
    assert not boto3.client("dynamodb").list_tables()["TableNames"]
    assert not sagemaker.list_endpoints()["Endpoints"]
    assert not sqs.list_queues().get("QueueUrls")
    assert not sns.list_topics()["Topics"]

    twice = lw(aws_env, "destroy", "--yes", "--poll", 0)
    assert twice.returncode == 0, twice.stderr
    assert lines_with(twice.stdout, ": already gone") == ORDER[::-1]


def test_first_deploy_needs_a_model_and_creates_nothing_without_one(aws_env, pushed_image):
    result = lw(aws_env, "deploy", "--poll", 0)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: the model stack is new: give the model package to serve with "
                                     "--model path/to/model.tar.gz")
    assert not boto3.client("cloudformation").describe_stacks()["Stacks"]


def test_missing_image_is_refused_before_anything_is_created(aws_env, model_tar):
    result = lw(aws_env, "deploy", "--model", model_tar, "--poll", 0)
    assert result.returncode == 2
    assert "no image livewatch:latest in ECR" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not boto3.client("cloudformation").describe_stacks()["Stacks"]


def test_one_stack_can_be_deployed_with_parameters(aws_env):
    result = lw(aws_env, "deploy", "--stack", "storage", "-p", "storage.MaxReceiveCount=3", "--poll", 0)
    assert result.returncode == 0, result.stderr
    queue_url = outputs(boto3.client("cloudformation"), "storage")["QueueUrl"]
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=queue_url,
                                                          AttributeNames=["RedrivePolicy"])
    assert json.loads(attributes["Attributes"]["RedrivePolicy"])["maxReceiveCount"] == 3
    bad = lw(aws_env, "deploy", "--stack", "storage", "-p", "storage.MaxRecieveCount=3")
    assert bad.returncode == 2 and "storage.MaxRecieveCount: no such parameter" in bad.stderr


@pytest.mark.parametrize("missing, message", [
    ("credentials", "error: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    ("region", "error: no AWS region set: set AWS_REGION (or AWS_DEFAULT_REGION)"),
])
@pytest.mark.parametrize("command", ["deploy", "destroy"])
def test_refuses_without_credentials_or_region(command, missing, message, aws_credentials):
    env = dict(aws_credentials)
    drop = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN") if missing == "credentials" \
        else ("AWS_REGION", "AWS_DEFAULT_REGION")
    for key in drop:
        env.pop(key)
    result = lw(env, command, *(["--yes"] if command == "destroy" else []))
    assert result.returncode == 2
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1


def test_gen_templates_writes_every_stack(tmp_path):
    cli = click.Group()
    register_commands(cli)
    runner = CliRunner()
    for fmt in ("json", "yaml"):
        result = runner.invoke(cli, ["gen-templates", "--out", str(tmp_path / fmt), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in (tmp_path / fmt).iterdir()) == sorted(f"{k}.{fmt}" for k in ORDER)
    assert json.loads((tmp_path / "json" / "fleet.json").read_text())["Resources"]["TaskDefinition"]
    assert "AWS::MediaLive::Channel" in (tmp_path / "yaml" / "livestream.yaml").read_text()


def test_help_stays_light():
    """The deploy commands load troposphere and boto3 only when they run."""
    code = ("import sys; from livewatch.cli import cli; "
            "from livewatch.deploy.commands import register_commands; register_commands(cli); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('troposphere', 'boto3', 'botocore', 'aioboto3')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == "[]\n"


# --- the waiting logic, with CloudFormation's slow states (moto settles every stack at once) -------


@pytest.fixture
def cfn_front(aws_env, moto_server, monkeypatch):
    """CloudFormation through a local front over moto that stages the real service's slow
    statuses and events (livewatch.testing.cloudformation), over real HTTP."""
    from livewatch.testing.cloudformation import CloudFormationFront

    with CloudFormationFront(moto_server.endpoint_url) as front:
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDFORMATION", front.endpoint_url)
        yield front


QUEUE_ONLY = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}


def test_waits_and_prints_progress_until_complete(cfn_front):
    cfn_front.stage(["CREATE_IN_PROGRESS", "CREATE_IN_PROGRESS", "CREATE_COMPLETE"])
    lines: list[str] = []
    stack = Stacks(boto3.Session(), lines.append, poll=0).deploy("lw-storage", QUEUE_ONLY, {}, {})
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert lines[0] == "lw-storage: creating" and lines[-1] == "lw-storage: CREATE_COMPLETE"
    progress = [line.split()[1:4] for line in lines if line.startswith("  ")]
    staged = [p[0] for p in progress if p[1:] == ["AWS::CloudFormation::Stack", "lw-storage"]]
    assert staged[-3:] == ["CREATE_IN_PROGRESS", "CREATE_IN_PROGRESS", "CREATE_COMPLETE"]
    assert cfn_front.actions.count("DescribeStacks") >= 4  # it kept asking until settled


def test_failure_names_the_resource_and_the_reason(cfn_front):
    cfn_front.stage(["CREATE_IN_PROGRESS", "ROLLBACK_IN_PROGRESS", "ROLLBACK_COMPLETE"],
                    failure=("Queue", "AWS::SQS::Queue", "Queue name already exists"))
    lines: list[str] = []
    expected = r"lw-storage: ROLLBACK_COMPLETE: Queue: Queue name already exists"
    with pytest.raises(LivewatchError, match=expected):
        Stacks(boto3.Session(), lines.append, poll=0).deploy("lw-storage", QUEUE_ONLY, {}, {})
    assert any("CREATE_FAILED" in line and "Queue name already exists" in line for line in lines)


def test_a_stack_left_by_a_failed_create_is_deleted_and_created_again(cfn_front):
    boto3.client("cloudformation").create_stack(StackName="lw-storage",
                                                TemplateBody=json.dumps(QUEUE_ONLY))
    cfn_front.stage(["ROLLBACK_COMPLETE"], after=None, until="DeleteStack")
    lines: list[str] = []
    stack = Stacks(boto3.Session(), lines.append, poll=0).deploy("lw-storage", QUEUE_ONLY, {}, {})
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert "lw-storage: the last create failed and rolled back; deleting it to start again" in lines
    calls = [a for a in cfn_front.actions if a in ("CreateStack", "DeleteStack", "UpdateStack")]
    assert calls == ["CreateStack", "DeleteStack", "CreateStack"]  # ours, then the deploy's


def test_an_update_in_progress_is_waited_for_before_the_next_change(cfn_front):
    boto3.client("cloudformation").create_stack(StackName="lw-storage",
                                                TemplateBody=json.dumps(QUEUE_ONLY))
    cfn_front.stage(["UPDATE_IN_PROGRESS", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_COMPLETE"],
                    after=None, until="UpdateStack")
    lines: list[str] = []
    changed = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue",
                                       "Properties": {"VisibilityTimeout": 120}}}}
    Stacks(boto3.Session(), lines.append, poll=0).deploy("lw-storage", changed, {}, {})
    assert lines[0] == "lw-storage: UPDATE_IN_PROGRESS, waiting for it to settle"
    assert "lw-storage: updating" in lines
    assert cfn_front.actions.index("UpdateStack") > cfn_front.actions.index("DescribeStackEvents")


def test_destroy_stops_a_running_channel_first(aws_env):
    """MediaLive is emulated through its API (not through CloudFormation): the stop-and-wait."""
    medialive = boto3.client("medialive")
    channel = medialive.create_channel(Name="demo", ChannelClass="SINGLE_PIPELINE")["Channel"]["Id"]
    medialive.start_channel(ChannelId=channel)
    assert medialive.describe_channel(ChannelId=channel)["State"] == "RUNNING"
    lines: list[str] = []
    stop_channel(medialive, channel, lines.append, poll=0, timeout=60)
    assert lines == [f"channel {channel}: RUNNING, stopping it", f"channel {channel}: IDLE"]
    stop_channel(medialive, channel, lines.append, poll=0, timeout=60)  # idle: nothing to do
    assert len(lines) == 2
    # (A channel that is gone is skipped on NotFoundException; moto answers 500 there, so untested.)


# --- the emulator fixture other tests reuse ------------------------------------------------------


def test_moto_server_resets_and_restarts_on_the_same_port(moto_server, aws_env):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="kept-until-reset")
    assert aws_env["AWS_ENDPOINT_URL"] == moto_server.endpoint_url
    moto_server.reset()
    assert not s3.list_buckets()["Buckets"]
    s3.create_bucket(Bucket="lost-on-restart")
    endpoint = moto_server.endpoint_url
    try:
        moto_server.stop()
        assert not moto_server.answers()
        with pytest.raises(Exception, match="Could not connect"):
            boto3.client("s3", config=botocore.config.Config(retries={"max_attempts": 1})).list_buckets()
    finally:
        moto_server.start()
    assert moto_server.endpoint_url == endpoint
    assert not s3.list_buckets()["Buckets"]
