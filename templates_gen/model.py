"""Model: the SageMaker endpoint that serves the classifier, autoscaled on invocations.

The model package (``model.tar.gz``: the network, ``classes.txt`` and ``code/`` for the MXNet
serving container) lies in the artifact bucket under ``models/``; `livewatch deploy` uploads it
under a name made from its checksum, so a new package gives a new SageMaker Model and the endpoint
rolls over to it. The endpoint keeps its name (``<Project>-classifier``) across updates. The
endpoint may write to the artifact bucket under ``thumbnails/`` only: the JPEGs of the windows it
classifies, when the request asks for them (the fleet's daemons do).

SageMaker refuses to change the instance type of a variant that is an autoscaling target: to
change `InstanceType`, destroy and deploy the model stack (``--stack model``).
"""
from __future__ import annotations

from troposphere import FindInMap, GetAtt, Ref, Sub, iam, sagemaker
from troposphere import applicationautoscaling as aas

from .common import (
    VARIANT_NAME, arn, assume_role, bucket_arn, import_value, name, new_template, output, parameter,
    policy_document, statement, tag_everything,
)

KEY = "model"
#: Where the endpoint writes thumbnails in the artifact bucket (the fleet's daemons ask for them).
THUMBNAIL_PREFIX = "thumbnails/"
REPOSITORY = "mxnet-inference"
#: Python version of each MXNet inference image (the image tag is <version>-<cpu|gpu>-<python>).
FRAMEWORKS = {"1.9.0": "py38", "1.8.0": "py37"}
INSTANCE_TYPES = {
    "ml.c5.large": "cpu", "ml.c5.xlarge": "cpu", "ml.c5.2xlarge": "cpu", "ml.c5.4xlarge": "cpu",
    "ml.m5.large": "cpu", "ml.m5.xlarge": "cpu", "ml.m5.2xlarge": "cpu",
    "ml.g4dn.xlarge": "gpu", "ml.g4dn.2xlarge": "gpu", "ml.g5.xlarge": "gpu", "ml.p3.2xlarge": "gpu",
}


def template():
    t = new_template("livewatch model: SageMaker MXNet model, endpoint config, endpoint, autoscaling")
    t.add_mapping("Frameworks", {v: {"Python": py} for v, py in FRAMEWORKS.items()})
    t.add_mapping("InstanceTypes", {k: {"Processor": p} for k, p in INSTANCE_TYPES.items()})

    model_key = parameter(t, "ModelDataKey", "Key of model.tar.gz in the artifact bucket (deploy sets it)",
                          "models/model.tar.gz", AllowedPattern=r"^models/[A-Za-z0-9._/-]+\.tar\.gz$",
                          ConstraintDescription="a key under models/ ending in .tar.gz")
    framework = parameter(t, "FrameworkVersion", "MXNet version of the inference image", "1.9.0",
                          AllowedValues=list(FRAMEWORKS))
    instance_type = parameter(t, "InstanceType", "Endpoint instance type (a GPU type selects the GPU image)",
                              "ml.c5.xlarge", AllowedValues=list(INSTANCE_TYPES))
    registry = parameter(t, "ImageRegistryAccount",
                         "Account of the AWS Deep Learning Containers registry in this region",
                         "763104351884",
                         AllowedPattern=r"^\d{12}$")
    initial = parameter(t, "InitialInstanceCount", "Instances when the endpoint is created", 1,
                        MinValue=1, MaxValue=10)
    min_instances = parameter(t, "MinInstances", "Fewest instances autoscaling keeps", 1,
                              MinValue=1, MaxValue=10)
    max_instances = parameter(t, "MaxInstances", "Most instances autoscaling starts", 4,
                              MinValue=1, MaxValue=40)
    target = parameter(t, "InvocationsPerInstance",
                       "Target invocations per instance per minute (a stream of 10 s segments sends 6)", 20,
                       MinValue=1, MaxValue=10000)
    entry_point = parameter(t, "EntryPoint", "Serving script in the package's code/ folder", "inference.py",
                            AllowedPattern=r"^[A-Za-z0-9_]+\.py$")

    artifact_bucket = import_value("storage", "ArtifactBucketName")
    endpoint_name = name("classifier")
    image = Sub(
        "${Registry}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/"
        + REPOSITORY + ":${Version}-${Processor}-${Python}",
        Registry=registry, Version=framework,
        Processor=FindInMap("InstanceTypes", instance_type, "Processor"),
        Python=FindInMap("Frameworks", framework, "Python"),
    )
    log_group = arn("logs", "log-group:/aws/sagemaker/Endpoints/${Endpoint}", Endpoint=endpoint_name)
    role = t.add_resource(iam.Role(
        "ExecutionRole",
        Description="SageMaker hosting: read the model package, pull the MXNet image, write "
                    "thumbnails, logs and metrics",
        AssumeRolePolicyDocument=assume_role("sagemaker.amazonaws.com"),
        Policies=[iam.Policy(PolicyName="serve-model", PolicyDocument=policy_document(
            statement(["s3:GetObject"], [bucket_arn(artifact_bucket, "/models/*")]),
            # the thumbnails the sagemaker classifier asks for (`thumbnails`), under their prefix only
            statement(["s3:PutObject"], [bucket_arn(artifact_bucket, "/" + THUMBNAIL_PREFIX + "*")]),
            statement(["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                      [Sub("arn:${AWS::Partition}:ecr:${AWS::Region}:${Registry}:repository/" + REPOSITORY,
                           Registry=registry)]),
            statement(["ecr:GetAuthorizationToken"], ["*"]),  # has no resource-level permissions
            statement(["logs:CreateLogGroup", "logs:DescribeLogStreams"], [log_group]),
            statement(["logs:CreateLogStream", "logs:PutLogEvents"],
                      [Sub("${Group}:log-stream:*", Group=log_group)]),
            statement(["cloudwatch:PutMetricData"], ["*"],  # has no resource-level permissions
                      Condition={"StringLike": {"cloudwatch:namespace": [
                          "/aws/sagemaker/Endpoints*", "aws/sagemaker/Endpoints*"]}}),
        ))],
    ))
    model = t.add_resource(sagemaker.Model(
        "Model",
        ExecutionRoleArn=GetAtt(role, "Arn"),
        PrimaryContainer=sagemaker.ContainerDefinition(
            Image=image,
            ModelDataUrl=Sub("s3://${Bucket}/${Key}", Bucket=artifact_bucket, Key=model_key),
            Environment={
                "SAGEMAKER_PROGRAM": entry_point,
                "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                "SAGEMAKER_REGION": Ref("AWS::Region"),
                "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
            },
        ),
    ))
    config = t.add_resource(sagemaker.EndpointConfig(
        "EndpointConfig",
        ProductionVariants=[sagemaker.ProductionVariant(
            VariantName=VARIANT_NAME, ModelName=GetAtt(model, "ModelName"), InstanceType=instance_type,
            InitialInstanceCount=initial, InitialVariantWeight=1.0,
        )],
    ))
    endpoint = t.add_resource(sagemaker.Endpoint(
        "Endpoint", EndpointName=endpoint_name, EndpointConfigName=GetAtt(config, "EndpointConfigName"),
    ))
    scaling_target = t.add_resource(aas.ScalableTarget(
        "EndpointScalingTarget",
        ServiceNamespace="sagemaker",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        ResourceId=Sub(f"endpoint/${{Name}}/variant/{VARIANT_NAME}", Name=GetAtt(endpoint, "EndpointName")),
        MinCapacity=min_instances,
        MaxCapacity=max_instances,
        # No RoleARN: Application Auto Scaling uses its service-linked role for SageMaker.
    ))
    t.add_resource(aas.ScalingPolicy(
        "EndpointScalingPolicy",
        PolicyName=name("invocations-per-instance"),
        PolicyType="TargetTrackingScaling",
        ScalingTargetId=Ref(scaling_target),
        TargetTrackingScalingPolicyConfiguration=aas.TargetTrackingScalingPolicyConfiguration(
            TargetValue=target,
            PredefinedMetricSpecification=aas.PredefinedMetricSpecification(
                PredefinedMetricType="SageMakerVariantInvocationsPerInstance"),
            ScaleOutCooldown=120,
            ScaleInCooldown=600,
        ),
    ))

    output(t, KEY, "EndpointName", GetAtt(endpoint, "EndpointName"),
           "SageMaker endpoint (the sagemaker classifier's)")
    output(t, KEY, "EndpointArn", Ref(endpoint), "ARN of the endpoint")
    output(t, KEY, "VariantName", VARIANT_NAME, "The endpoint's variant")
    return tag_everything(t, KEY)
