"""Storage and events: the livestream bucket, its ``.ts`` notifications to SQS, the dead-letter
queue, and the artifact bucket (model packages, the demo video).

MediaLive writes ``<SegmentPrefix><stream>/<name>_<n>.ts`` into the livestream bucket; each new
segment sends one S3 event to the queue; livewatch daemons consume it (competing consumers). A
message received `MaxReceiveCount` times without being deleted moves to the dead-letter queue.
"""
from __future__ import annotations

from troposphere import GetAtt, Ref, Sub, s3, sqs

from .model import THUMBNAIL_PREFIX
from .common import (
    bucket_arn, bucket_name, new_template, output, parameter, policy_document, tag_everything,
)

KEY = "storage"
QUEUE_RETENTION_SECONDS = 4 * 24 * 3600  # SQS's default, stated: a daemon outage of days loses nothing
DLQ_RETENTION_SECONDS = 14 * 24 * 3600  # the most SQS keeps a message: time to look into failures


def _bucket(logical_id: str, name, description: str, **properties) -> s3.Bucket:
    """An encrypted bucket that blocks every kind of public access."""
    return s3.Bucket(
        logical_id,
        BucketName=name,
        BucketEncryption=s3.BucketEncryption(ServerSideEncryptionConfiguration=[
            s3.ServerSideEncryptionRule(
                ServerSideEncryptionByDefault=s3.ServerSideEncryptionByDefault(SSEAlgorithm="AES256"),
                BucketKeyEnabled=True,
            )
        ]),
        PublicAccessBlockConfiguration=s3.PublicAccessBlockConfiguration(
            BlockPublicAcls=True, BlockPublicPolicy=True, IgnorePublicAcls=True, RestrictPublicBuckets=True,
        ),
        OwnershipControls=s3.OwnershipControls(
            Rules=[s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")]),
        Metadata={"Description": description},
        DeletionPolicy="Delete",  # `livewatch destroy` empties it first
        UpdateReplacePolicy="Delete",
        **properties,
    )


def _tls_only(bucket: s3.Bucket) -> s3.BucketPolicy:
    """Refuse plain-HTTP requests to the bucket."""
    return s3.BucketPolicy(
        f"{bucket.title}Policy",
        Bucket=Ref(bucket),
        PolicyDocument=policy_document({
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [GetAtt(bucket, "Arn"), Sub("${Arn}/*", Arn=GetAtt(bucket, "Arn"))],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }),
    )


def template():
    t = new_template("livewatch storage and events: livestream bucket -> S3 event (.ts) -> SQS (+ DLQ); "
                     "artifact bucket")
    prefix = parameter(t, "SegmentPrefix", "Key prefix of the segments (the stream is the next folder)",
                       "live/", AllowedPattern=r"^[a-zA-Z0-9_-]+/$",
                       ConstraintDescription="one folder name ending in '/', e.g. live/")
    retention = parameter(t, "SegmentRetentionDays", "Days a segment stays in the livestream bucket", 7,
                          MinValue=1, MaxValue=365)
    visibility = parameter(t, "VisibilityTimeoutSeconds",
                           "Seconds a received segment stays hidden from other daemons; longer than the "
                           "daemon's segment_timeout plus its sink retries", 600, MinValue=30, MaxValue=43200)
    receives = parameter(t, "MaxReceiveCount", "Deliveries of a segment before the dead-letter queue",
                         5, MinValue=1, MaxValue=100)

    live_name = bucket_name("live")
    dlq = t.add_resource(sqs.Queue("DeadLetterQueue", MessageRetentionPeriod=DLQ_RETENTION_SECONDS,
                                   SqsManagedSseEnabled=True, DeletionPolicy="Delete",
                                   UpdateReplacePolicy="Delete"))
    queue = t.add_resource(sqs.Queue(
        "SegmentQueue",
        VisibilityTimeout=visibility,
        MessageRetentionPeriod=QUEUE_RETENTION_SECONDS,
        ReceiveMessageWaitTimeSeconds=20,  # long polling
        SqsManagedSseEnabled=True,
        RedrivePolicy=sqs.RedrivePolicy(deadLetterTargetArn=GetAtt(dlq, "Arn"), maxReceiveCount=receives),
        DeletionPolicy="Delete",
        UpdateReplacePolicy="Delete",
    ))
    # S3 checks that it may send to the queue when the notification is created, so the policy comes
    # first; it names the bucket by its (known) name, not a GetAtt, which would be a cycle.
    queue_policy = t.add_resource(sqs.QueuePolicy(
        "SegmentQueuePolicy",
        Queues=[Ref(queue)],
        PolicyDocument=policy_document({
            "Sid": "LivestreamBucketEvents",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": GetAtt(queue, "Arn"),
            "Condition": {
                "ArnEquals": {"aws:SourceArn": bucket_arn(live_name)},
                "StringEquals": {"aws:SourceAccount": Ref("AWS::AccountId")},
            },
        }),
    ))
    live = t.add_resource(_bucket(
        "LivestreamBucket", live_name, "HLS segments and playlists written by MediaLive",
        DependsOn=[queue_policy.title],
        LifecycleConfiguration=s3.LifecycleConfiguration(Rules=[
            s3.LifecycleRule(
                Id="ExpireOldSegments", Status="Enabled", Prefix=prefix, ExpirationInDays=retention,
                AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(DaysAfterInitiation=1)),
        ]),
        NotificationConfiguration=s3.NotificationConfiguration(QueueConfigurations=[
            s3.QueueConfigurations(
                Event="s3:ObjectCreated:*",
                Queue=GetAtt(queue, "Arn"),
                Filter=s3.Filter(S3Key=s3.S3Key(Rules=[
                    s3.Rules(Name="prefix", Value=prefix),
                    s3.Rules(Name="suffix", Value=".ts"),
                ])),
            )
        ]),
    ))
    artifacts = t.add_resource(_bucket(
        "ArtifactBucket", bucket_name("artifacts"), "Model packages (model.tar.gz) and the demo video",
        VersioningConfiguration=s3.VersioningConfiguration(Status="Enabled"),
        LifecycleConfiguration=s3.LifecycleConfiguration(Rules=[
            s3.LifecycleRule(Id="ExpireOldVersions", Status="Enabled",
                             NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(NoncurrentDays=30)),
            # the endpoint's window thumbnails (the model stack's THUMBNAIL_PREFIX) go with the
            # segments they show
            s3.LifecycleRule(Id="ExpireOldThumbnails", Status="Enabled", Prefix=THUMBNAIL_PREFIX,
                             ExpirationInDays=retention),
        ]),
    ))

    for bucket in (live, artifacts):
        t.add_resource(_tls_only(bucket))

    output(t, KEY, "LivestreamBucketName", Ref(live), "Bucket MediaLive writes segments to")
    output(t, KEY, "LivestreamBucketArn", GetAtt(live, "Arn"), "ARN of the livestream bucket")
    output(t, KEY, "SegmentPrefix", prefix, "Key prefix of the segments")
    output(t, KEY, "QueueUrl", Ref(queue), "SQS queue of new-segment events (the daemon's source)")
    output(t, KEY, "QueueArn", GetAtt(queue, "Arn"), "ARN of the segment queue")
    output(t, KEY, "QueueName", GetAtt(queue, "QueueName"), "Name of the segment queue (a metric dimension)")
    output(t, KEY, "DeadLetterQueueUrl", Ref(dlq), "Segments that failed MaxReceiveCount times")
    output(t, KEY, "DeadLetterQueueArn", GetAtt(dlq, "Arn"), "ARN of the dead-letter queue")
    output(t, KEY, "ArtifactBucketName", Ref(artifacts), "Bucket for model packages and the demo video")
    output(t, KEY, "ArtifactBucketArn", GetAtt(artifacts, "Arn"), "ARN of the artifact bucket")
    return tag_everything(t, KEY)
