"""Results: the DynamoDB table the daemon's dynamodb sink writes one item per segment into, and
the SNS topic its sns sink publishes event changes to.

Key design (the sink's, `livewatch.sinks.dynamodb_items`): partition key ``Stream`` (the channel),
sort key ``SegmentKey`` (the segment's URI: its identity only, so writing the same segment twice
leaves one item whether or not its time was known either time). The local secondary index
``Timeline`` (``Stream``, ``When``: program date-time, else zero-padded sequence, else creation
time) returns a stream's detections in time order; it projects every attribute. Items also carry
the original sample's ``S3Path``, ``Predicted``, ``Probability`` and ``DateCreatedUTC``; DynamoDB
needs only the key attributes declared here.

A table's key schema and local indexes are fixed when it is created: a table made with another
layout must be replaced (CloudFormation cannot replace this custom-named table in place:
``livewatch destroy --stack fleet --stack results``, then deploy). Each stream's item collection (its items
and their index entries, about 1.5 KB a detection) is limited to 10 GB by the local index: several
million detections, over a year of 10 s segments.

The events topic (``EventsTopicArn``) gets one message per event change (opened, updated, closed),
with the message attributes ``label``, ``stream`` and ``type`` (`livewatch.sinks.sns`) for
subscription filter policies. It is always encrypted: with the AWS managed key ``alias/aws/sns``
(whose key policy lets this account's principals use it through SNS), or with the customer
managed key given as ``TopicKmsKeyArn``, whose key policy must then allow the fleet's task role
kms:GenerateDataKey* and kms:Decrypt: the fleet cannot grant them itself, as a stack's conditions
cannot see another stack's parameters.
"""
from __future__ import annotations

from troposphere import GetAtt, If, NoValue, Ref, dynamodb, sns

from .common import name, new_template, optional_kms_key, output, tag_everything

KEY = "results"
PARTITION_KEY = "Stream"
SORT_KEY = "SegmentKey"
TIMELINE_INDEX = "Timeline"
TIMELINE_KEY = "When"
#: SNS's AWS managed key: the topic's encryption when no customer managed key is given.
SNS_MANAGED_KEY = "alias/aws/sns"


def template():
    t = new_template("livewatch results: the detections table (Stream, SegmentKey; index Timeline on "
                     "Stream, When), on demand, with PITR; the encrypted topic of event changes")
    cmk, key = optional_kms_key(
        t, "TableKmsKeyArn", "the detections table",
        "the fleet's task role (kms:Decrypt, kms:GenerateDataKey) and DynamoDB")
    table = t.add_resource(dynamodb.Table(
        "DetectionsTable",
        TableName=name("detections"),
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            dynamodb.AttributeDefinition(AttributeName=PARTITION_KEY, AttributeType="S"),
            dynamodb.AttributeDefinition(AttributeName=SORT_KEY, AttributeType="S"),
            dynamodb.AttributeDefinition(AttributeName=TIMELINE_KEY, AttributeType="S"),
        ],
        KeySchema=[
            dynamodb.KeySchema(AttributeName=PARTITION_KEY, KeyType="HASH"),
            dynamodb.KeySchema(AttributeName=SORT_KEY, KeyType="RANGE"),
        ],
        LocalSecondaryIndexes=[dynamodb.LocalSecondaryIndex(
            IndexName=TIMELINE_INDEX,
            KeySchema=[
                dynamodb.KeySchema(AttributeName=PARTITION_KEY, KeyType="HASH"),
                dynamodb.KeySchema(AttributeName=TIMELINE_KEY, KeyType="RANGE"),
            ],
            Projection=dynamodb.Projection(ProjectionType="ALL"),
        )],
        PointInTimeRecoverySpecification=dynamodb.PointInTimeRecoverySpecification(
            PointInTimeRecoveryEnabled=True),
        SSESpecification=dynamodb.SSESpecification(
            SSEEnabled=True, SSEType=If(cmk, "KMS", NoValue), KMSMasterKeyId=If(cmk, key, NoValue)),
        DeletionPolicy="Delete",  # `livewatch destroy` removes the detections with the stack
        UpdateReplacePolicy="Delete",
    ))
    topic_cmk, topic_key = optional_kms_key(
        t, "TopicKmsKeyArn", "the events topic",
        "the fleet's task role (kms:GenerateDataKey*, kms:Decrypt), which publishes to it",
        otherwise=f"SNS's AWS managed key, {SNS_MANAGED_KEY}")
    topic = t.add_resource(sns.Topic(
        "EventsTopic",
        TopicName=name("events"),
        DisplayName="livewatch events",
        KmsMasterKeyId=If(topic_cmk, topic_key, SNS_MANAGED_KEY),
    ))
    output(t, KEY, "TableName", Ref(table), "Detections table (the dynamodb sink's `table`)")
    output(t, KEY, "TableArn", GetAtt(table, "Arn"), "ARN of the detections table")
    output(t, KEY, "TimelineIndexName", TIMELINE_INDEX,
           "Local secondary index for a stream's detections in time order (Query Stream = :s)")
    output(t, KEY, "EventsTopicName", GetAtt(topic, "TopicName"), "SNS topic of event changes")
    output(t, KEY, "EventsTopicArn", Ref(topic),
           "ARN of the events topic (the sns sink's `topic_arn`; subscribe with a filter policy on the "
           "label, stream and type attributes)")
    return tag_everything(t, KEY)


def create_table_args(table_name: str) -> dict:
    """The detections table as DynamoDB CreateTable arguments, exactly as the template declares it
    (keys, index, billing): for emulators and tests, which make the table without CloudFormation."""
    spec = template().to_dict()["Resources"]["DetectionsTable"]["Properties"]
    return {"TableName": table_name,
            **{k: spec[k] for k in ("BillingMode", "AttributeDefinitions", "KeySchema",
                                    "LocalSecondaryIndexes")}}
