"""Where the daemons run: subnets of an existing VPC (parameters) and an egress-only security group.

`livewatch deploy` fills `VpcId` and `Subnets` with the region's default VPC when they are not
given; pass your own (``-p fleet.VpcId=... -p fleet.Subnets=subnet-a,subnet-b``) to run the
daemons in another VPC, and ``-p fleet.AssignPublicIp=DISABLED`` for private subnets that reach
AWS through a NAT gateway or VPC endpoints. The daemons accept no connections: HTTPS out only.
"""
from __future__ import annotations

from dataclasses import dataclass

from troposphere import Ref, Template, ec2

from .common import name, parameter


@dataclass
class Network:
    subnets: Ref
    security_group: Ref
    assign_public_ip: Ref


def add_network(t: Template) -> Network:
    vpc = parameter(t, "VpcId", "VPC the daemons run in (deploy uses the default VPC if not given)", None,
                    Type="AWS::EC2::VPC::Id")
    subnets = parameter(t, "Subnets", "Subnets of VpcId for the daemons, two or more zones for availability",
                        None, Type="List<AWS::EC2::Subnet::Id>")
    public_ip = parameter(t, "AssignPublicIp", "ENABLED for public subnets; DISABLED behind a NAT gateway",
                          "ENABLED", AllowedValues=["ENABLED", "DISABLED"])
    group = t.add_resource(ec2.SecurityGroup(
        "DaemonSecurityGroup",
        GroupDescription="livewatch daemons: HTTPS out to AWS APIs, nothing in",
        GroupName=name("daemon"),
        VpcId=vpc,
        SecurityGroupEgress=[ec2.SecurityGroupRule(
            IpProtocol="tcp", FromPort=443, ToPort=443, CidrIp="0.0.0.0/0",
            Description="AWS APIs and the image registry")],
    ))
    return Network(subnets=subnets, security_group=Ref(group), assign_public_ip=public_ip)
