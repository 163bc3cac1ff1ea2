"""template.yaml: the KMS key that seals sensitive payload fields, its rotation and policy, and
least-privilege grants: the API and the worker may ask for data keys, only the worker may open
them, every grant is on this key alone and only with the codec's encryption context."""

from __future__ import annotations

from typing import Any

from tarefa.local.template import Resolver, load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
KEY = "SensitiveFieldsKey"
CONTEXT = {"StringEquals": {"kms:EncryptionContext:tarefa-jobs-table": {"Ref": "JobsTable"}}}
ROOT = {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}


def props(logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = RESOURCES[logical_id]["Properties"]
    return properties


def function_statements(logical_id: str) -> list[dict[str, Any]]:
    """A function's statements: inline, from the managed policies it references, both branches
    of any Fn::If."""
    found: list[dict[str, Any]] = []
    for policy in props(logical_id).get("Policies", []):
        ref = policy.get("Ref") if isinstance(policy, dict) else None
        document = props(ref)["PolicyDocument"] if ref in RESOURCES else policy
        for statement in document["Statement"]:
            if "Fn::If" in statement:
                found.extend(b for b in statement["Fn::If"][1:] if b != {"Ref": "AWS::NoValue"})
            else:
                found.append(statement)
    return found


def kms_actions(statement: dict[str, Any]) -> set[str]:
    actions = statement["Action"]
    return {a for a in ([actions] if isinstance(actions, str) else actions) if a.lower().startswith("kms:")}


def test_the_key_is_symmetric_rotated_and_reaches_every_function_by_arn() -> None:
    assert RESOURCES[KEY]["Type"] == "AWS::KMS::Key"
    key = props(KEY)
    assert key["KeySpec"] == "SYMMETRIC_DEFAULT" and key["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert key["EnableKeyRotation"] is True and key["RotationPeriodInDays"] <= 365
    assert 7 <= key["PendingWindowInDays"] <= 30  # a deletion can be cancelled for a while
    assert "Condition" not in RESOURCES[KEY]  # every stage has it
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert env["TAREFA_SENSITIVE_KEY_ID"] == {"Fn::GetAtt": [KEY, "Arn"]}
    from tarefa.settings import Settings

    assert Settings.model_fields["sensitive_key_id"].alias == "tarefa_sensitive_key_id"
    alias = RESOURCES["SensitiveFieldsKeyAlias"]
    assert alias["Type"] == "AWS::KMS::Alias" and alias["Properties"]["TargetKeyId"] == {"Ref": KEY}
    assert Resolver(TEMPLATE).resolve(alias["Properties"]["AliasName"]) == "alias/tarefa-dev-sensitive-fields"
    assert TEMPLATE["Outputs"]["SensitiveFieldsKeyArn"]["Value"] == {"Fn::GetAtt": [KEY, "Arn"]}


def test_the_key_policy_lets_the_account_administer_it_and_use_it_only_for_the_codec() -> None:
    policy = props(KEY)["KeyPolicy"]
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {"KeyAdministration", "SealAndOpenThroughIam"}
    for statement in by_sid.values():
        assert statement["Effect"] == "Allow" and statement["Principal"] == ROOT
        assert all("*" not in a for a in statement["Action"]), statement["Sid"]  # no kms:*
    admin = set(by_sid["KeyAdministration"]["Action"])
    assert {"kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:EnableKeyRotation"} <= admin
    crypto = {"kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey"}
    assert not admin & crypto
    # Rotation cannot be turned off, and no grant can bypass the context condition
    assert not admin & {"kms:DisableKeyRotation", "kms:CreateGrant", "kms:GenerateDataKeyWithoutPlaintext"}
    use = by_sid["SealAndOpenThroughIam"]
    assert sorted(use["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert use["Condition"] == CONTEXT


def test_the_api_seals_the_worker_opens_and_no_other_function_touches_the_key() -> None:
    functions = [k for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"]
    granted: dict[str, set[str]] = {}
    for function in functions:
        for statement in function_statements(function):
            actions = kms_actions(statement)
            if not actions:
                continue
            granted.setdefault(function, set()).update(actions)
            # On this key alone, and only with the codec's encryption context
            assert statement["Effect"] == "Allow", function
            assert statement["Resource"] == {"Fn::GetAtt": [KEY, "Arn"]}, function
            assert statement["Condition"] == CONTEXT, function
            assert all("*" not in a for a in actions), function
    # The worker also seals: chained enqueues, and producers that send straight to SQS; the guests
    # workload's routes enqueue types with sensitive fields (a password), the messaging webhooks
    # an inbound message's sender and text; maintenance makes the callbacks of the jobs its sweeps
    # end, webhook.delivery jobs whose event data is sealed
    assert granted == {
        "ApiFunction": {"kms:GenerateDataKey"},
        "MaintenanceFunction": {"kms:GenerateDataKey"},
        "WorkerFunction": {"kms:Decrypt", "kms:GenerateDataKey"},
        "GuestsFunction": {"kms:GenerateDataKey"},
        "MessagingFunction": {"kms:GenerateDataKey"},
    }
    # No managed policy hands out KMS rights behind the functions' backs
    for logical_id, spec in RESOURCES.items():
        if spec["Type"] == "AWS::IAM::ManagedPolicy":
            for statement in spec["Properties"]["PolicyDocument"]["Statement"]:
                branches = statement["Fn::If"][1:] if "Fn::If" in statement else [statement]
                for branch in branches:
                    if isinstance(branch, dict) and "Action" in branch:
                        assert not kms_actions(branch), logical_id


def test_in_the_cache_vpc_the_functions_reach_kms_through_an_endpoint() -> None:
    endpoint = RESOURCES["KmsEndpoint"]
    assert endpoint["Type"] == "AWS::EC2::VPCEndpoint" and endpoint["Condition"] == "CreateCacheEndpoints"
    assert endpoint["Properties"]["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.kms"}
    assert endpoint["Properties"]["VpcEndpointType"] == "Interface"
    assert endpoint["Properties"]["PrivateDnsEnabled"] is True


def test_the_local_stack_creates_the_key_with_its_rotation_and_hands_its_arn_to_the_functions() -> None:
    import boto3
    from moto import mock_aws

    from tarefa.local.app import EmulatorClients
    from tarefa.local.provision import provision

    with mock_aws():
        stack = provision(EmulatorClients(boto3.client("sqs"), boto3.client("dynamodb")))
        kms = boto3.client("kms")
        arn = stack.outputs["SensitiveFieldsKeyArn"]
        assert kms.describe_key(KeyId=arn)["KeyMetadata"]["KeySpec"] == "SYMMETRIC_DEFAULT"
        assert kms.get_key_rotation_status(KeyId=arn)["KeyRotationEnabled"] is True
        aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
        assert aliases["alias/tarefa-dev-sensitive-fields"] == arn.rsplit("/", 1)[1]
        for logical_id in ("ApiFunction", "WorkerFunction"):
            assert stack.functions[logical_id].environment["TAREFA_SENSITIVE_KEY_ID"] == arn
