"""The generated CloudFormation: cfn-lint clean, and what a reviewer of the stacks would check.

No snapshots: each test states one property of the templates. Resource types the local emulator
cannot create (MediaLive, Application Auto Scaling, S3 notifications, queue and bucket policies;
see tests/test_deploy.py) are checked here against the AWS APIs' own models from botocore.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import botocore.session
import pytest
from botocore.validate import ParamValidator
from cfnlint.api import ManualArgs, lint

from livewatch.deploy import commands
from livewatch.testing.strict import require
from templates_gen import STACKS, common, get_stack
from templates_gen.security import ACCEPTED_FINDINGS

LINT_REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1"]
#: Actions that have no resource-level permissions: the only ones allowed on Resource "*".
NO_RESOURCE_LEVEL = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}


@pytest.fixture(scope="module")
def templates() -> dict[str, dict]:
    return {spec.key: json.loads(spec.template().to_json()) for spec in STACKS}


def resources(template: dict, resource_type: str) -> dict[str, dict]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == resource_type}


def props(template: dict, logical_id: str) -> dict:
    return template["Resources"][logical_id]["Properties"]


def imported(key: str, output: str) -> dict:
    return {"Fn::ImportValue": {"Fn::Sub": f"${{Project}}-{key}-{output}"}}


def allow_statements(template: dict, logical_id: str) -> list[dict]:
    return [s for policy in props(template, logical_id).get("Policies", [])
            for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]


def actions(statements: list[dict]) -> set[str]:
    return {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


# --- cfn-lint ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [s.key for s in STACKS])
def test_cfn_lint_finds_no_errors(key, templates):
    matches = lint(json.dumps(templates[key]), config=ManualArgs(regions=LINT_REGIONS))
    errors = [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})"
              for m in matches if m.rule.id.startswith("E")]
    assert not errors, "\n".join(errors)


def test_cfn_lint_is_really_checking(templates):
    broken = json.loads(json.dumps(templates["results"]))
    props(broken, "DetectionsTable")["BillingMode"] = "ON_DEMAND"
    matches = lint(json.dumps(broken), config=ManualArgs(regions=["us-east-1"]))
    assert any(m.rule.id.startswith("E") for m in matches)


# --- storage and events -------------------------------------------------------------------------


def test_notification_sends_only_ts_segments_to_the_queue(templates):
    storage = templates["storage"]
    [config] = props(storage, "LivestreamBucket")["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Event"] == "s3:ObjectCreated:*"
    assert config["Queue"] == {"Fn::GetAtt": ["SegmentQueue", "Arn"]}
    rules = {r["Name"]: r["Value"] for r in config["Filter"]["S3Key"]["Rules"]}
    assert rules == {"suffix": ".ts", "prefix": {"Ref": "SegmentPrefix"}}


def test_queue_policy_lets_only_that_bucket_send(templates):
    storage = templates["storage"]
    policy = props(storage, "SegmentQueuePolicy")
    assert policy["Queues"] == [{"Ref": "SegmentQueue"}]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == {"Fn::GetAtt": ["SegmentQueue", "Arn"]}
    source = statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"]
    # The ARN is built from the very name the bucket gets, not a GetAtt (which would be a cycle).
    assert source[1]["Bucket"] == props(storage, "LivestreamBucket")["BucketName"]
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert "SegmentQueuePolicy" in storage["Resources"]["LivestreamBucket"]["DependsOn"]


def test_redrive_policy_points_at_the_dead_letter_queue(templates):
    storage = templates["storage"]
    redrive = props(storage, "SegmentQueue")["RedrivePolicy"]
    assert redrive == {"deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                       "maxReceiveCount": {"Ref": "MaxReceiveCount"}}
    assert props(storage, "DeadLetterQueue")["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_buckets_are_private_encrypted_and_tls_only(templates):
    storage = templates["storage"]
    buckets = resources(storage, "AWS::S3::Bucket")
    assert set(buckets) == {"LivestreamBucket", "ArtifactBucket"}
    for logical_id, bucket in buckets.items():
        p = bucket["Properties"]
        assert all(p["PublicAccessBlockConfiguration"].values()), logical_id
        rule = p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        [deny] = props(storage, f"{logical_id}Policy")["PolicyDocument"]["Statement"]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    [expire] = props(storage, "LivestreamBucket")["LifecycleConfiguration"]["Rules"]
    assert expire["ExpirationInDays"] == {"Ref": "SegmentRetentionDays"}
    assert expire["Prefix"] == {"Ref": "SegmentPrefix"}
    # the endpoint's thumbnails expire with the segments they show; old model versions after 30 days
    rules = {r["Id"]: r for r in props(storage, "ArtifactBucket")["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireOldThumbnails"]["Prefix"] == "thumbnails/"
    assert rules["ExpireOldThumbnails"]["ExpirationInDays"] == {"Ref": "SegmentRetentionDays"}
    assert rules["ExpireOldVersions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}


# --- results ------------------------------------------------------------------------------------


def test_table_has_the_sinks_key_design(templates):
    table = props(templates["results"], "DetectionsTable")
    # The key is the segment's identity only (SegmentKey = its URI); time order is the index's.
    assert table["KeySchema"] == [{"AttributeName": "Stream", "KeyType": "HASH"},
                                  {"AttributeName": "SegmentKey", "KeyType": "RANGE"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "Stream", "AttributeType": "S"},
                                             {"AttributeName": "SegmentKey", "AttributeType": "S"},
                                             {"AttributeName": "When", "AttributeType": "S"}]
    assert table["LocalSecondaryIndexes"] == [{
        "IndexName": "Timeline",
        "KeySchema": [{"AttributeName": "Stream", "KeyType": "HASH"},
                      {"AttributeName": "When", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "ALL"}}]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert {"TableName", "TableArn", "TimelineIndexName"} <= set(templates["results"]["Outputs"])


def test_events_topic_is_encrypted_and_exported(templates):
    results = templates["results"]
    [topic_id] = resources(results, "AWS::SNS::Topic")
    topic = props(results, topic_id)
    assert topic["TopicName"] == {"Fn::Sub": "${Project}-events"}
    # Always encrypted: the customer managed key when one is given, else SNS's AWS managed key.
    assert topic["KmsMasterKeyId"] == {"Fn::If": ["TopicKmsKeyArnGiven", {"Ref": "TopicKmsKeyArn"},
                                                  "alias/aws/sns"]}
    outputs = results["Outputs"]
    assert outputs["EventsTopicArn"]["Value"] == {"Ref": topic_id}
    assert outputs["EventsTopicName"]["Value"] == {"Fn::GetAtt": [topic_id, "TopicName"]}
    for name in ("EventsTopicArn", "EventsTopicName"):
        assert outputs[name]["Export"]["Name"] == {"Fn::Sub": f"${{Project}}-results-{name}"}


# --- model --------------------------------------------------------------------------------------


def test_endpoint_autoscaling_target_names_the_endpoints_variant(templates):
    model = templates["model"]
    [variant] = props(model, "EndpointConfig")["ProductionVariants"]
    target = props(model, "EndpointScalingTarget")
    template, values = target["ResourceId"]["Fn::Sub"]
    assert template == f"endpoint/${{Name}}/variant/{variant['VariantName']}"
    assert values == {"Name": {"Fn::GetAtt": ["Endpoint", "EndpointName"]}}
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    policy = props(model, "EndpointScalingPolicy")
    assert policy["ScalingTargetId"] == {"Ref": "EndpointScalingTarget"}
    metric = policy["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]
    assert metric["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"


def test_model_serves_the_package_with_the_regions_mxnet_image(templates):
    model = templates["model"]
    container = props(model, "Model")["PrimaryContainer"]
    image, values = container["Image"]["Fn::Sub"]
    assert image.startswith("${Registry}.dkr.ecr.${AWS::Region}.") and "/mxnet-inference:${Version}-" in image
    assert values["Version"] == {"Ref": "FrameworkVersion"}
    assert model["Mappings"]["InstanceTypes"]["ml.g4dn.xlarge"]["Processor"] == "gpu"
    assert model["Mappings"]["Frameworks"]["1.9.0"]["Python"] == "py38"
    assert container["ModelDataUrl"]["Fn::Sub"][1] == {"Bucket": imported("storage", "ArtifactBucketName"),
                                                       "Key": {"Ref": "ModelDataKey"}}
    [read] = [s for s in allow_statements(model, "ExecutionRole") if s["Action"] == ["s3:GetObject"]]
    assert read["Resource"][0]["Fn::Sub"][0].endswith("${Bucket}/models/*")


# --- fleet --------------------------------------------------------------------------------------


def test_task_role_may_read_consume_invoke_and_write_the_table_only(templates):
    fleet = templates["fleet"]
    statements = allow_statements(fleet, "TaskRole")
    assert actions(statements) == {
        "s3:GetObject",
        "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sagemaker:InvokeEndpoint", "sagemaker:DescribeEndpoint",
        "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:DescribeTable",
        "dynamodb:Query", "dynamodb:GetItem", "dynamodb:Scan",
        "sns:Publish", "sns:GetTopicAttributes",
    }
    by_action = {a: s["Resource"] for s in statements for a in s["Action"]}
    assert by_action["sqs:ReceiveMessage"] == [imported("storage", "QueueArn")]
    assert by_action["sagemaker:InvokeEndpoint"] == [imported("model", "EndpointArn")]
    assert by_action["dynamodb:PutItem"] == [imported("results", "TableArn")]
    # reads (events are derived from stored windows) on the table and its indexes, nothing else
    assert by_action["dynamodb:Query"] == [imported("results", "TableArn"),
                                           {"Fn::Join": ["", [imported("results", "TableArn"), "/index/*"]]}]


def test_task_role_may_publish_to_the_events_topic_only(templates):
    """sns:Publish (and the sink's start check, GetTopicAttributes) on the results stack's topic,
    no other SNS action, no other resource; no KMS grant (the topic's key policy decides)."""
    statements = [s for s in allow_statements(templates["fleet"], "TaskRole")
                  if any(a.startswith("sns:") for a in actions([s]))]
    assert len(statements) == 1
    [publish] = statements
    assert sorted(publish["Action"]) == ["sns:GetTopicAttributes", "sns:Publish"]
    assert publish["Resource"] == [imported("results", "EventsTopicArn")]
    assert "Condition" not in publish and "NotResource" not in publish
    assert not any(a.startswith("kms:") for a in actions(allow_statements(templates["fleet"], "TaskRole")))


def test_task_role_cannot_write_the_bucket(templates):
    s3_actions = {a for a in actions(allow_statements(templates["fleet"], "TaskRole")) if a.startswith("s3:")}
    assert s3_actions == {"s3:GetObject"}
    assert not any(re.match(r"s3:(Put|Delete|Restore|Abort|Replicate|Create)", a) for a in s3_actions)


def test_only_the_endpoint_may_write_thumbnails_and_only_under_their_prefix(templates):
    """The endpoint's role may put objects in the artifact bucket under thumbnails/ and nowhere
    else; the daemons only ask for thumbnails and never read them (the web page that shows them,
    `livewatch ui --dynamodb`, runs with its user's credentials), so the task role gets nothing."""
    model = templates["model"]
    statements = allow_statements(model, "ExecutionRole")
    assert {a for a in actions(statements) if a.startswith("s3:")} == {"s3:GetObject", "s3:PutObject"}
    [write] = [s for s in statements if "s3:PutObject" in actions([s])]
    assert write["Action"] == ["s3:PutObject"] and "Condition" not in write
    assert write["Resource"] == [{"Fn::Sub": ["arn:${AWS::Partition}:s3:::${Bucket}/thumbnails/*",
                                              {"Bucket": imported("storage", "ArtifactBucketName")}]}]
    fleet_s3 = [s for s in allow_statements(templates["fleet"], "TaskRole")
                if any(a.startswith("s3:") for a in actions([s]))]
    assert "thumbnails" not in json.dumps(fleet_s3) and "ArtifactBucket" not in json.dumps(fleet_s3)


def test_the_fleets_daemons_ask_for_thumbnails_where_the_endpoint_may_write(templates, monkeypatch,
                                                                            tmp_path):
    from livewatch.settings import load_settings
    from livewatch.wiring import build

    fleet = templates["fleet"]
    [container] = props(fleet, "TaskDefinition")["ContainerDefinitions"]
    imports: dict[str, str] = {}
    for variable in container["Environment"]:
        monkeypatch.setenv(variable["Name"], _resolve(variable["Value"], fleet["Parameters"], imports))
    monkeypatch.chdir(tmp_path)
    options = build(load_settings()).classifier.options
    assert options.thumbnails is True
    assert options.thumbnails_bucket == imports["storage-ArtifactBucketName"]
    [write] = [s for s in allow_statements(templates["model"], "ExecutionRole")
               if "s3:PutObject" in actions([s])]
    assert write["Resource"][0]["Fn::Sub"][0].endswith("${Bucket}/" + options.thumbnails_prefix + "*")


def _resolve(value, parameters: dict, imports: dict):
    """A task definition value as ECS would see it: imports and parameters filled in."""
    if isinstance(value, dict) and "Fn::ImportValue" in value:
        export = value["Fn::ImportValue"]["Fn::Sub"].replace("${Project}-", "")
        return imports.setdefault(export, f"imported-{export}")
    if isinstance(value, dict) and "Ref" in value:
        return {"AWS::Region": "eu-west-1"}.get(value["Ref"]) or str(parameters[value["Ref"]]["Default"])
    return value


def test_daemon_config_comes_from_the_other_stacks(templates, monkeypatch, tmp_path):
    """The task definition's environment, given to `livewatch run` as ECS gives it, configures
    the daemon that the stacks wire up: the queue, endpoint, table and topic the other stacks export."""
    from livewatch.settings import load_settings
    from livewatch.wiring import build

    fleet = templates["fleet"]
    [container] = props(fleet, "TaskDefinition")["ContainerDefinitions"]
    imports: dict[str, str] = {}
    for variable in container["Environment"]:
        monkeypatch.setenv(variable["Name"], _resolve(variable["Value"], fleet["Parameters"], imports))
    monkeypatch.chdir(tmp_path)  # no livewatch.toml: the environment alone
    settings = load_settings()
    components = build(settings)
    [source], [sink, notifications] = components.sources, components.sinks
    assert (source.name, source.options.queue_url) == ("s3-events", imports["storage-QueueUrl"])
    assert components.classifier.name == "sagemaker"
    assert components.classifier.options.endpoint_name == imports["model-EndpointName"]
    assert (sink.name, sink.options.table) == ("dynamodb", imports["results-TableName"])
    assert (notifications.name, notifications.options.topic_arn) == ("sns", imports["results-EventsTopicArn"])
    assert notifications.options.changes == ["opened", "updated", "closed"]  # every change, every label
    assert notifications.options.labels == []
    assert settings.daemon.workers == fleet["Parameters"]["Workers"]["Default"]
    assert settings.daemon.shutdown_timeout < container["StopTimeout"]  # in-flight ones finish
    assert os.environ["AWS_REGION"] == os.environ["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert container["EntryPoint"] + container["Command"] == ["livewatch", "run"]
    # The Dockerfile's HEALTHCHECK, which ECS does not take from the image.
    assert container["HealthCheck"]["Command"] == ["CMD", "python", "-m", "livewatch.healthcheck"]


def test_fleet_scales_on_the_queue_backlog_per_task(templates):
    fleet = templates["fleet"]
    target = props(fleet, "ServiceScalingTarget")
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    assert target["MinCapacity"] == {"Ref": "MinTasks"} and target["MaxCapacity"] == {"Ref": "MaxTasks"}
    config = props(fleet, "BacklogScalingPolicy")["TargetTrackingScalingPolicyConfiguration"]
    queries = {q["Id"]: q for q in config["CustomizedMetricSpecification"]["Metrics"]}
    visible = queries["visible"]["MetricStat"]["Metric"]
    assert (visible["Namespace"], visible["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert visible["Dimensions"] == [{"Name": "QueueName", "Value": imported("storage", "QueueName")}]
    assert queries["backlog"]["Expression"] == "visible / tasks" and queries["backlog"]["ReturnData"] is True
    assert config["TargetValue"] == {"Ref": "BacklogPerTask"}


# --- all stacks ---------------------------------------------------------------------------------


def test_iam_policies_name_their_resources(templates):
    for key, template in templates.items():
        for role in resources(template, "AWS::IAM::Role"):
            for statement in allow_statements(template, role):
                where = f"{key}/{role}: {statement['Action']}"
                assert not any("*" in a for a in actions([statement])), f"wildcard action in {where}"
                if "*" in statement["Resource"]:
                    assert actions([statement]) <= NO_RESOURCE_LEVEL, f"Resource '*' in {where}"


def test_every_import_is_an_export_of_an_earlier_stack(templates):
    exported: set[str] = set()
    wired = 0
    for spec in STACKS:
        text = json.dumps(templates[spec.key])
        imports = re.findall(r'"Fn::ImportValue": \{"Fn::Sub": "\$\{Project\}-(\w+)-(\w+)"\}', text)
        wired += len(imports)
        for stack, output in imports:
            assert f"{stack}-{output}" in exported, f"{spec.key} imports {stack}-{output} before its export"
        for name, out in templates[spec.key].get("Outputs", {}).items():
            if "Export" in out:
                assert out["Export"]["Name"] == {"Fn::Sub": f"${{Project}}-{spec.key}-{name}"}
                exported.add(f"{spec.key}-{name}")
    assert wired == json.dumps(templates).count("Fn::ImportValue") > 10


def test_every_taggable_resource_is_tagged():
    for spec in STACKS:
        template = spec.template()
        for logical_id, resource in template.resources.items():
            if "Tags" not in resource.props:
                continue
            tags = resource.to_dict()["Properties"]["Tags"]
            keys = set(tags) if isinstance(tags, dict) else {t["Key"] for t in tags}
            assert {"Project", "Component", "ManagedBy"} <= keys, f"{spec.key}/{logical_id}"


def test_parameters_have_sane_defaults_within_their_constraints(templates):
    no_default = {("fleet", "VpcId"), ("fleet", "Subnets")}  # deploy fills in the default VPC
    for key, template in templates.items():
        for name, p in template["Parameters"].items():
            assert p.get("Description"), f"{key}.{name} has no description"
            if (key, name) in no_default:
                continue
            default = p["Default"]
            assert {"AllowedValues", "AllowedPattern", "MinValue"} & set(p), f"{key}.{name} is unconstrained"
            if "AllowedValues" in p:
                assert default in p["AllowedValues"], f"{key}.{name}"
            if "AllowedPattern" in p:
                assert re.match(p["AllowedPattern"], str(default)), f"{key}.{name}"
            if "MinValue" in p:
                assert p["MinValue"] <= default <= p["MaxValue"], f"{key}.{name}"
    assert re.match(common.PROJECT_PATTERN, common.DEFAULT_PROJECT)
    assert commands.PROJECT_RE.pattern == common.PROJECT_PATTERN  # the CLI checks --project the same way


def test_templates_fit_inline_in_create_stack(templates):
    for key, template in templates.items():
        assert len(json.dumps(template, separators=(",", ":"))) < 51_200, key


# --- types the emulator skips: checked against the AWS APIs' models ------------------------------


def _resolved(value):
    """Intrinsic functions replaced by a placeholder, so the properties can meet an API model."""
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)).startswith(("Fn::", "Ref")):
            return "RESOLVED"
        return {k: _resolved(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved(v) for v in value]
    return value


def _enum_errors(shape, value, path="") -> list[str]:
    if shape.type_name == "structure" and isinstance(value, dict):
        return [e for k, v in value.items() if k in shape.members
                for e in _enum_errors(shape.members[k], v, f"{path}.{k}")]
    if shape.type_name == "list" and isinstance(value, list):
        return [e for i, v in enumerate(value) for e in _enum_errors(shape.member, v, f"{path}[{i}]")]
    if shape.type_name == "string" and shape.enum and value != "RESOLVED" and value not in shape.enum:
        return [f"{path}: {value!r} is not one of {shape.enum}"]
    return []


def _numbers(value, placeholder: int):
    """Placeholders where the API wants a number (a Ref to a Number parameter)."""
    return placeholder if value == "RESOLVED" else value


@pytest.mark.parametrize("service, operation, key, logical_id", [
    ("medialive", "CreateChannel", "livestream", "Channel"),
    ("medialive", "CreateInput", "livestream", "DemoInput"),
    ("application-autoscaling", "RegisterScalableTarget", "model", "EndpointScalingTarget"),
    ("application-autoscaling", "PutScalingPolicy", "model", "EndpointScalingPolicy"),
    ("application-autoscaling", "RegisterScalableTarget", "fleet", "ServiceScalingTarget"),
    ("application-autoscaling", "PutScalingPolicy", "fleet", "BacklogScalingPolicy"),
])
def test_properties_match_the_service_api(service, operation, key, logical_id, templates):
    params = _resolved(props(templates[key], logical_id))
    params.pop("Tags", None)
    if operation == "CreateChannel":
        hls = params["EncoderSettings"]["OutputGroups"][0]["OutputGroupSettings"]["HlsGroupSettings"]
        hls["SegmentLength"] = hls["ProgramDateTimePeriod"] = 10
    if operation == "RegisterScalableTarget":
        params["MinCapacity"], params["MaxCapacity"] = 1, 4
    if operation == "PutScalingPolicy":
        params.pop("ScalingTargetId")  # CloudFormation's shortcut for the three below
        params.update(ServiceNamespace="ecs", ResourceId="service/c/s",
                      ScalableDimension="ecs:service:DesiredCount")
        config = params["TargetTrackingScalingPolicyConfiguration"]
        config["TargetValue"] = _numbers(config["TargetValue"], 10)
    shape = botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()
    assert not _enum_errors(shape, params)


def test_medialive_writes_10s_segments_of_the_looped_video_under_the_stream(templates):
    live = templates["livestream"]
    channel = props(live, "Channel")
    hls = channel["EncoderSettings"]["OutputGroups"][0]["OutputGroupSettings"]["HlsGroupSettings"]
    assert hls["SegmentLength"] == {"Ref": "SegmentSeconds"}
    assert live["Parameters"]["SegmentSeconds"]["Default"] == 10
    assert hls["ProgramDateTime"] == "INCLUDE"
    gop = channel["EncoderSettings"]["VideoDescriptions"][0]["CodecSettings"]["H264Settings"]
    assert all(s % gop["GopSize"] == 0 for s in live["Parameters"]["SegmentSeconds"]["AllowedValues"])
    [destination] = channel["Destinations"]
    url, values = destination["Settings"][0]["Url"]["Fn::Sub"]
    assert url == "s3ssl://${Bucket}/${Prefix}${Stream}/segment"
    assert values == {"Bucket": imported("storage", "LivestreamBucketName"),
                      "Prefix": imported("storage", "SegmentPrefix"), "Stream": {"Ref": "StreamName"}}
    assert channel["InputAttachments"][0]["InputSettings"]["SourceEndBehavior"] == "LOOP"
    assert props(live, "DemoInput")["Type"] == "MP4_FILE"
    writes = [s for s in allow_statements(live, "MediaLiveRole") if s["Action"] == ["s3:PutObject"]]
    assert writes[0]["Resource"][0]["Fn::Sub"][0].endswith("${Bucket}/${Prefix}${Stream}/*")


def test_stack_registry_is_in_dependency_order():
    assert [s.key for s in STACKS] == ["storage", "results", "model", "livestream", "fleet"]
    assert get_stack("fleet").stack_name("demo") == "demo-fleet"
    with pytest.raises(KeyError, match="stacks: storage"):
        get_stack("nope")


# --- IaC security scanner (checkov) ------------------------------------------------------------

CHECKOV = Path(os.environ.get("LIVEWATCH_CHECKOV")
               or Path(__file__).parents[1] / ".venv" / "tools" / "checkov" / "bin" / "checkov")


@pytest.fixture(scope="module")
def checkov_findings(templates, tmp_path_factory) -> set[tuple[str, str, str]]:
    """(check id, stack key, logical id) of every failed checkov check on the generated stacks:
    one checkov run over all of them (it takes seconds to start)."""
    require(None if CHECKOV.exists() else f"checkov is not installed at {CHECKOV}",
            "`make setup` (checkov in its own venv, .venv/tools/checkov)")
    folder = tmp_path_factory.mktemp("stacks")
    for key, template in templates.items():
        (folder / f"{key}.json").write_text(json.dumps(template))
    done = subprocess.run([str(CHECKOV), "-d", str(folder), "--framework", "cloudformation",
                           "--output", "json", "--quiet", "--compact", "--skip-download"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: findings
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert sum(r["summary"]["passed"] for r in reports) > 50  # it really scanned the stacks
    return {(f["check_id"], Path(f["file_path"]).stem, f["resource"].split(".", 1)[1])
            for r in reports for f in r["results"]["failed_checks"]}


@pytest.mark.parametrize("key", [s.key for s in STACKS])
def test_checkov_finds_nothing_that_is_not_accepted_with_a_reason(key, checkov_findings):
    new = sorted(f for f in checkov_findings if f[1] == key and f not in ACCEPTED_FINDINGS)
    assert not new, ("checkov findings: fix them, or list them with a reason in "
                     f"templates_gen/security.py: {new}")


def test_every_accepted_finding_is_still_reported(checkov_findings):
    fixed = sorted(set(ACCEPTED_FINDINGS) - checkov_findings)
    assert not fixed, f"no longer reported, remove from templates_gen/security.py: {fixed}"


@pytest.mark.parametrize("key, parameter, logical_id, path", [
    ("results", "TableKmsKeyArn", "DetectionsTable", ("SSESpecification", "KMSMasterKeyId")),
    ("results", "TopicKmsKeyArn", "EventsTopic", ("KmsMasterKeyId",)),
    ("fleet", "LogKmsKeyArn", "LogGroup", ("KmsKeyId",)),
])
def test_customer_managed_keys_are_opt_in(templates, key, parameter, logical_id, path):
    template = templates[key]
    assert template["Parameters"][parameter]["Default"] == ""
    condition = template["Conditions"][f"{parameter}Given"]
    assert condition == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]}
    value = props(template, logical_id)
    for step in path:
        value = value[step]
    otherwise = "alias/aws/sns" if logical_id == "EventsTopic" else {"Ref": "AWS::NoValue"}  # SNS: always SSE
    assert value == {"Fn::If": [f"{parameter}Given", {"Ref": parameter}, otherwise]}
    assert re.match(template["Parameters"][parameter]["AllowedPattern"],
                    "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
