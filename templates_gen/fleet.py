"""Daemon fleet: ``livewatch run`` on ECS Fargate, scaled on the segment queue's backlog.

Every task is one daemon consuming the same SQS queue (competing consumers): this is how livewatch
grows past one machine. The service tracks a backlog per task (visible messages / running tasks),
the metric AWS recommends for queue workers. The image is ``<account>.dkr.ecr.<region>/
<ImageRepository>:<ImageTag>``, built from the repository's Dockerfile and pushed before deploying
(`livewatch deploy --build-image` does both and sets ImageTag; without it, deploy checks the tag
is there). ECS runs the image's health check on ``/livez`` and replaces a daemon that fails it.

The task role may read segments, consume the queue, invoke the endpoint, write (and read back) the
table and publish to the events topic, and nothing else: it cannot write or delete objects in the
bucket.
"""
from __future__ import annotations

from troposphere import FindInMap, GetAtt, If, Join, NoValue, Ref, Sub, ecs, iam, logs
from troposphere import applicationautoscaling as aas

from .common import (
    arn, assume_role, import_value, name, new_template, optional_kms_key, output, parameter,
    policy_document, statement, tag_everything,
)
from .daemon_env import STOP_TIMEOUT, daemon_environment
from .network import add_network

KEY = "fleet"
CONTAINER = "livewatch"
#: Fargate CPU units / MiB for each size (only some pairs are valid on Fargate).
TASK_SIZES = {"small": (512, 1024), "medium": (1024, 2048), "large": (2048, 4096), "xlarge": (4096, 8192)}
LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 180, 365]


def _task_role(t, queue_arn, bucket_name, prefix, endpoint_arn, table_arn, topic_arn):
    return t.add_resource(iam.Role(
        "TaskRole",
        Description="livewatch daemon: read segments, consume the queue, invoke the endpoint, write "
                    "results, publish event changes",
        AssumeRolePolicyDocument=_ecs_trust(confused_deputy=True),
        Policies=[iam.Policy(PolicyName="daemon", PolicyDocument=policy_document(
            statement(["s3:GetObject"], [Sub("arn:${AWS::Partition}:s3:::${Bucket}/${Prefix}*",
                                             Bucket=bucket_name, Prefix=prefix)]),
            statement(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                       "sqs:GetQueueAttributes", "sqs:GetQueueUrl"], [queue_arn]),
            # DescribeEndpoint: the sagemaker classifier checks at start that the endpoint exists
            statement(["sagemaker:InvokeEndpoint", "sagemaker:DescribeEndpoint"], [endpoint_arn]),
            statement(["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem",
                       "dynamodb:DescribeTable"], [table_arn]),
            # events are derived from the stored windows: the sink reads them back (Query on the
            # table and its Timeline index, GetItem of the clock mark, Scan for the outbox's first pass)
            statement(["dynamodb:Query", "dynamodb:GetItem", "dynamodb:Scan"],
                      [table_arn, Join("", [table_arn, "/index/*"])]),
            # GetTopicAttributes: the sns sink checks at start that the topic exists
            statement(["sns:Publish", "sns:GetTopicAttributes"], [topic_arn]),
        ))],
    ))


def _ecs_trust(confused_deputy: bool = False):
    """Trust ECS tasks; the task role also only from this account's tasks in this region (as ECS's
    documentation shows it)."""
    if not confused_deputy:
        return assume_role("ecs-tasks.amazonaws.com")
    return assume_role(
        "ecs-tasks.amazonaws.com",
        ArnLike={"aws:SourceArn": Sub("arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:*")},
        StringEquals={"aws:SourceAccount": Ref("AWS::AccountId")},
    )


def template():
    t = new_template("livewatch fleet: the daemon on ECS Fargate, scaled on the segment queue's backlog")
    t.add_mapping("TaskSizes", {k: {"Cpu": str(c), "Memory": str(m)} for k, (c, m) in TASK_SIZES.items()})
    repository = parameter(t, "ImageRepository", "ECR repository (this account and region) of the image",
                           "livewatch", AllowedPattern=r"^[a-z0-9]+(?:[._/-][a-z0-9]+)*$")
    tag = parameter(t, "ImageTag", "Tag of the livewatch image", "latest",
                    AllowedPattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    size = parameter(t, "TaskSize", "CPU and memory of a daemon (small: 0.5 vCPU, 1 GiB; xlarge: 4, 8 GiB)",
                     "medium", AllowedValues=list(TASK_SIZES))
    workers = parameter(t, "Workers", "Segments one daemon classifies at once", 2, MinValue=1, MaxValue=16)
    min_tasks = parameter(t, "MinTasks", "Fewest daemons running", 1, MinValue=1, MaxValue=100)
    max_tasks = parameter(t, "MaxTasks", "Most daemons autoscaling starts", 10, MinValue=1, MaxValue=100)
    backlog = parameter(t, "BacklogPerTask", "Target visible segments per running daemon", 10,
                        MinValue=1, MaxValue=10000)
    retention = parameter(t, "LogRetentionDays", "Days the daemon's logs are kept", 30,
                          AllowedValues=LOG_RETENTION_DAYS)
    log_cmk, log_key = optional_kms_key(
        t, "LogKmsKeyArn", "the daemon's log group",
        "the CloudWatch Logs service principal of this region (kms:Encrypt*, kms:Decrypt*, "
        "kms:GenerateDataKey*, kms:Describe*)")
    network = add_network(t)

    queue_name = import_value("storage", "QueueName")
    table_name = import_value("results", "TableName")
    endpoint_name = import_value("model", "EndpointName")

    log_group = t.add_resource(logs.LogGroup("LogGroup", LogGroupName=Sub("/livewatch/${Project}/daemon"),
                                             RetentionInDays=retention,
                                             KmsKeyId=If(log_cmk, log_key, NoValue), DeletionPolicy="Delete",
                                             UpdateReplacePolicy="Delete"))
    execution_role = t.add_resource(iam.Role(
        "ExecutionRole",
        Description="ECS agent: pull the livewatch image and send the daemon's logs",
        AssumeRolePolicyDocument=_ecs_trust(),
        Policies=[iam.Policy(PolicyName="pull-and-log", PolicyDocument=policy_document(
            statement(["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                      [arn("ecr", "repository/${Repository}", Repository=repository)]),
            statement(["ecr:GetAuthorizationToken"], ["*"]),  # has no resource-level permissions
            statement(["logs:CreateLogStream", "logs:PutLogEvents"],
                      [arn("logs", "log-group:${Group}:log-stream:*", Group=Ref(log_group))]),
        ))],
    ))
    task_role = _task_role(
        t, import_value("storage", "QueueArn"), import_value("storage", "LivestreamBucketName"),
        import_value("storage", "SegmentPrefix"), import_value("model", "EndpointArn"),
        import_value("results", "TableArn"), import_value("results", "EventsTopicArn"),
    )
    environment = daemon_environment(
        queue_url=import_value("storage", "QueueUrl"), table_name=table_name, endpoint_name=endpoint_name,
        topic_arn=import_value("results", "EventsTopicArn"), workers=workers, region=Ref("AWS::Region"),
    )
    task = t.add_resource(ecs.TaskDefinition(
        "TaskDefinition",
        Family=name("daemon"),
        Cpu=FindInMap("TaskSizes", size, "Cpu"),
        Memory=FindInMap("TaskSizes", size, "Memory"),
        NetworkMode="awsvpc",
        RequiresCompatibilities=["FARGATE"],
        RuntimePlatform=ecs.RuntimePlatform(OperatingSystemFamily="LINUX", CpuArchitecture="X86_64"),
        ExecutionRoleArn=GetAtt(execution_role, "Arn"),
        TaskRoleArn=GetAtt(task_role, "Arn"),
        ContainerDefinitions=[ecs.ContainerDefinition(
            Name=CONTAINER,
            Image=Sub("${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/${Repository}:${Tag}",
                      Repository=repository, Tag=tag),
            EntryPoint=["livewatch"],
            Command=["run"],
            Essential=True,
            StopTimeout=STOP_TIMEOUT,
            # The image's HEALTHCHECK, which ECS does not read from the image: /livez answers while
            # the daemon's event loop does (a stalled daemon is replaced).
            HealthCheck=ecs.HealthCheck(Command=["CMD", "python", "-m", "livewatch.healthcheck"],
                                        Interval=30, Timeout=10, Retries=3, StartPeriod=120),
            Environment=[ecs.Environment(Name=k, Value=v) for k, v in environment],
            LogConfiguration=ecs.LogConfiguration(LogDriver="awslogs", Options={
                "awslogs-group": Ref(log_group), "awslogs-region": Ref("AWS::Region"),
                "awslogs-stream-prefix": "daemon",
            }),
        )],
    ))
    cluster = t.add_resource(ecs.Cluster(
        "Cluster", ClusterName=name("daemons"),
        ClusterSettings=[ecs.ClusterSetting(Name="containerInsights", Value="enabled")],  # RunningTaskCount
    ))
    service = t.add_resource(ecs.Service(
        "Service",
        ServiceName=name("daemon"),
        Cluster=Ref(cluster),
        TaskDefinition=Ref(task),
        LaunchType="FARGATE",
        # No DesiredCount: a stack update then leaves the count autoscaling chose (MinTasks
        # applies through the scalable target; ECS starts a new service with one task).
        PropagateTags="SERVICE",
        EnableECSManagedTags=True,
        DeploymentConfiguration=ecs.DeploymentConfiguration(
            MinimumHealthyPercent=100, MaximumPercent=200,
            DeploymentCircuitBreaker=ecs.DeploymentCircuitBreaker(Enable=True, Rollback=True),
        ),
        NetworkConfiguration=ecs.NetworkConfiguration(AwsvpcConfiguration=ecs.AwsvpcConfiguration(
            AssignPublicIp=network.assign_public_ip, Subnets=network.subnets,
            SecurityGroups=[network.security_group])),
    ))
    scaling_target = t.add_resource(aas.ScalableTarget(
        "ServiceScalingTarget",
        ServiceNamespace="ecs",
        ScalableDimension="ecs:service:DesiredCount",
        ResourceId=Sub("service/${Cluster}/${Service}", Cluster=Ref(cluster),
                       Service=GetAtt(service, "Name")),
        MinCapacity=min_tasks,
        MaxCapacity=max_tasks,
    ))
    t.add_resource(aas.ScalingPolicy(
        "BacklogScalingPolicy",
        PolicyName=name("backlog-per-task"),
        PolicyType="TargetTrackingScaling",
        ScalingTargetId=Ref(scaling_target),
        TargetTrackingScalingPolicyConfiguration=aas.TargetTrackingScalingPolicyConfiguration(
            TargetValue=backlog,
            ScaleOutCooldown=60,
            ScaleInCooldown=300,
            CustomizedMetricSpecification=aas.CustomizedMetricSpecification(Metrics=[
                _metric("visible", "AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=queue_name),
                _metric("tasks", "ECS/ContainerInsights", "RunningTaskCount",
                        ClusterName=Ref(cluster), ServiceName=GetAtt(service, "Name")),
                aas.TargetTrackingMetricDataQuery(Id="backlog", Label="Visible segments per running daemon",
                                                  Expression="visible / tasks", ReturnData=True),
            ]),
        ),
    ))

    output(t, KEY, "ClusterName", Ref(cluster), "ECS cluster of the daemons")
    output(t, KEY, "ServiceName", GetAtt(service, "Name"), "ECS service running `livewatch run`")
    output(t, KEY, "TaskDefinitionArn", Ref(task), "The daemon's task definition")
    output(t, KEY, "LogGroupName", Ref(log_group), "CloudWatch log group of the daemons")
    return tag_everything(t, KEY)


def _metric(query_id: str, namespace: str, metric: str, **dimensions) -> aas.TargetTrackingMetricDataQuery:
    return aas.TargetTrackingMetricDataQuery(
        Id=query_id, ReturnData=False,
        MetricStat=aas.TargetTrackingMetricStat(Stat="Average", Metric=aas.TargetTrackingMetric(
            Namespace=namespace, MetricName=metric,
            Dimensions=[aas.TargetTrackingMetricDimension(Name=k, Value=v) for k, v in dimensions.items()],
        )),
    )
