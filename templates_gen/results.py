"""Results: the DynamoDB table the daemon's dynamodb sink writes one item per segment into.

Key design (the sink's): partition key ``Stream`` (the channel), sort key ``SegmentKey`` (the
segment's zero-padded start time or sequence number plus its key), so a stream's detections come
back in time order and writing the same segment twice leaves one item. Items also carry the
original sample's ``S3Path``, ``Predicted``, ``Probability`` and ``DateCreatedUTC``; DynamoDB
needs only the key attributes declared here.
"""
from __future__ import annotations

from troposphere import GetAtt, Ref, dynamodb

from .common import name, new_template, output, tag_everything

KEY = "results"
PARTITION_KEY = "Stream"
SORT_KEY = "SegmentKey"


def template():
    t = new_template("livewatch results: the detections table (Stream, SegmentKey), on demand, with PITR")
    table = t.add_resource(dynamodb.Table(
        "DetectionsTable",
        TableName=name("detections"),
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            dynamodb.AttributeDefinition(AttributeName=PARTITION_KEY, AttributeType="S"),
            dynamodb.AttributeDefinition(AttributeName=SORT_KEY, AttributeType="S"),
        ],
        KeySchema=[
            dynamodb.KeySchema(AttributeName=PARTITION_KEY, KeyType="HASH"),
            dynamodb.KeySchema(AttributeName=SORT_KEY, KeyType="RANGE"),
        ],
        PointInTimeRecoverySpecification=dynamodb.PointInTimeRecoverySpecification(
            PointInTimeRecoveryEnabled=True),
        SSESpecification=dynamodb.SSESpecification(SSEEnabled=True),
        DeletionPolicy="Delete",  # `livewatch destroy` removes the detections with the stack
        UpdateReplacePolicy="Delete",
    ))
    output(t, KEY, "TableName", Ref(table), "Detections table (the dynamodb sink's `table`)")
    output(t, KEY, "TableArn", GetAtt(table, "Arn"), "ARN of the detections table")
    return tag_everything(t, KEY)
