"""Livestream: a MediaLive channel that loops the demo MP4 and writes HLS into the livestream bucket.

Segments land at ``<SegmentPrefix><StreamName>/segment_720p_<n>.ts`` (so the daemon names the
stream `StreamName`), `SegmentSeconds` long, with program date-times in the playlists. Keyframes
come every 2 s, so every allowed segment length cuts on a keyframe. The channel is created stopped:
`livewatch deploy` prints the command that starts it, and `livewatch destroy` stops it.
"""
from __future__ import annotations

from troposphere import GetAtt, Ref, Sub, iam
from troposphere import medialive as ml

from .common import (
    arn, assume_role, bucket_arn, import_value, name, new_template, output, parameter, policy_document,
    statement, tag_everything,
)

KEY = "livestream"
DESTINATION = "segments"
VIDEO = "video_720p"
NAME_MODIFIER = "_720p"
BASENAME = "segment"
GOP_SECONDS = 2


def _encoder(segment_seconds) -> ml.EncoderSettings:
    return ml.EncoderSettings(
        TimecodeConfig=ml.TimecodeConfig(Source="SYSTEMCLOCK"),
        AudioDescriptions=[],  # video only: the classifier reads pictures (MediaLive requires the key)
        VideoDescriptions=[ml.VideoDescription(
            Name=VIDEO, Width=1280, Height=720, ScalingBehavior="DEFAULT", RespondToAfd="NONE", Sharpness=50,
            CodecSettings=ml.VideoCodecSettings(H264Settings=ml.H264Settings(
                RateControlMode="CBR", Bitrate=3_000_000, Profile="MAIN", Level="H264_LEVEL_AUTO",
                FramerateControl="INITIALIZE_FROM_SOURCE", ParControl="INITIALIZE_FROM_SOURCE",
                GopSize=float(GOP_SECONDS), GopSizeUnits="SECONDS", GopClosedCadence=1, GopNumBFrames=2,
                SceneChangeDetect="DISABLED",  # keyframes exactly every GOP, as the segments need
                AdaptiveQuantization="MEDIUM", EntropyEncoding="CABAC", ColorMetadata="INSERT",
            )),
        )],
        OutputGroups=[ml.OutputGroup(
            Name="hls-to-s3",
            OutputGroupSettings=ml.OutputGroupSettings(HlsGroupSettings=ml.HlsGroupSettings(
                Destination=ml.OutputLocationRef(DestinationRefId=DESTINATION),
                Mode="LIVE",
                SegmentLength=segment_seconds,
                SegmentationMode="USE_SEGMENT_DURATION",
                TsFileMode="SEGMENTED_FILES",
                ProgramDateTime="INCLUDE",
                ProgramDateTimePeriod=segment_seconds,
                ManifestDurationFormat="FLOATING_POINT",
                IndexNSegments=10,
                KeepSegments=21,
                DirectoryStructure="SINGLE_DIRECTORY",
                InputLossAction="PAUSE_OUTPUT",
            )),
            Outputs=[ml.Output(
                OutputName="720p",
                VideoDescriptionName=VIDEO,
                OutputSettings=ml.OutputSettings(HlsOutputSettings=ml.HlsOutputSettings(
                    NameModifier=NAME_MODIFIER,
                    HlsSettings=ml.HlsSettings(StandardHlsSettings=ml.StandardHlsSettings(
                        AudioRenditionSets="program_audio", M3u8Settings=ml.M3u8Settings())),
                )),
            )],
        )],
    )


def template():
    t = new_template("livewatch livestream: MediaLive loops the demo MP4 into 10 s HLS segments in S3")
    stream = parameter(t, "StreamName", "Channel name: the folder the segments land in", "cam1",
                       AllowedPattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
                       ConstraintDescription="lower-case letters, digits, '-' and '_'")
    video_key = parameter(t, "VideoKey", "Key of the demo MP4 in the artifact bucket", "videos/demo.mp4",
                          AllowedPattern=r"^videos/[A-Za-z0-9._/-]+\.mp4$",
                          ConstraintDescription="a key under videos/ ending in .mp4")
    seconds = parameter(t, "SegmentSeconds", "HLS segment length in seconds (keyframes every 2 s)", 10,
                        AllowedValues=[2, 4, 6, 8, 10, 12, 20, 30])

    live_bucket = import_value("storage", "LivestreamBucketName")
    prefix = import_value("storage", "SegmentPrefix")
    artifact_bucket = import_value("storage", "ArtifactBucketName")
    logs = arn("logs", "log-group:ElementalMediaLive")

    role = t.add_resource(iam.Role(
        "MediaLiveRole",
        Description="MediaLive: read the demo video, write HLS segments, write its logs",
        AssumeRolePolicyDocument=assume_role("medialive.amazonaws.com"),
        Policies=[iam.Policy(PolicyName="livestream", PolicyDocument=policy_document(
            statement(["s3:GetObject"], [Sub("arn:${AWS::Partition}:s3:::${Bucket}/${Key}",
                                             Bucket=artifact_bucket, Key=video_key)]),
            statement(["s3:PutObject"], [Sub("arn:${AWS::Partition}:s3:::${Bucket}/${Prefix}${Stream}/*",
                                             Bucket=live_bucket, Prefix=prefix, Stream=stream)]),
            statement(["s3:ListBucket"], [bucket_arn(live_bucket), bucket_arn(artifact_bucket)]),
            statement(["logs:CreateLogGroup", "logs:DescribeLogStreams"], [logs]),
            statement(["logs:CreateLogStream", "logs:PutLogEvents"],
                      [Sub("${Group}:log-stream:*", Group=logs)]),
        ))],
    ))
    demo = t.add_resource(ml.Input(
        "DemoInput",
        Name=name("demo-video"),
        Type="MP4_FILE",
        Sources=[ml.InputSourceRequest(
            Url=Sub("s3ssl://${Bucket}/${Key}", Bucket=artifact_bucket, Key=video_key))],
    ))
    channel = t.add_resource(ml.Channel(
        "Channel",
        Name=name("channel"),
        ChannelClass="SINGLE_PIPELINE",
        RoleArn=GetAtt(role, "Arn"),
        LogLevel="WARNING",
        InputSpecification=ml.InputSpecification(Codec="AVC", Resolution="HD", MaximumBitrate="MAX_10_MBPS"),
        InputAttachments=[ml.InputAttachment(
            InputAttachmentName="demo-video",
            InputId=Ref(demo),
            InputSettings=ml.InputSettings(SourceEndBehavior="LOOP"),
        )],
        Destinations=[ml.OutputDestination(Id=DESTINATION, Settings=[ml.OutputDestinationSettings(
            Url=Sub(f"s3ssl://${{Bucket}}/${{Prefix}}${{Stream}}/{BASENAME}",
                    Bucket=live_bucket, Prefix=prefix, Stream=stream))])],
        EncoderSettings=_encoder(seconds),
    ))

    # Outputs use Ref only: Ref of a MediaLive channel or input is its id.
    output(t, KEY, "ChannelId", Ref(channel), "MediaLive channel id (start it to begin the stream)")
    output(t, KEY, "InputId", Ref(demo), "MediaLive input id")
    output(t, KEY, "StreamName", stream, "Stream name the daemon reports detections under")
    return tag_everything(t, KEY)
