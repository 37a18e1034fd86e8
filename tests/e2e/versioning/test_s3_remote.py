"""The team setup's DVC remote is S3 (MinIO in infra/): a run pushes its data there and
a model version's data is verified and restored from it using only the version's tags.

The S3 API is served on loopback by moto's server mode; DVC talks to it through dvc-s3
exactly as it would to MinIO (endpointurl + AWS_* credentials from the environment).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.projects import ticket_project
from tests.servers import s3_server
from thaw.config import ThawConfig
from thaw.datasets import file_md5

pytestmark = pytest.mark.e2e
BUCKET = "thaw-dvc"


def test_data_round_trips_through_an_s3_remote(tmp_path, tiny_encoder, prefect_harness, monkeypatch):
    import boto3

    from flows.pipeline import thaw_pipeline
    from tasks.tracking.client import resolve_version
    from tasks.versioning.restore import restore_data, verify_lineage

    for key, value in {
        "AWS_ACCESS_KEY_ID": "thaw-test",
        "AWS_SECRET_ACCESS_KEY": "thaw-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    workspace = tmp_path / "project"
    with s3_server(tmp_path / "s3") as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket=BUCKET)
        remote = {"remote_url": f"s3://{BUCKET}/datasets", "remote_options": {"endpointurl": endpoint}}
        cfg = ThawConfig.model_validate(
            ticket_project(workspace, tiny_encoder, "s3-tickets", 300, 5, versioning=remote)
        )
        json.loads(Path(thaw_pipeline(cfg)).read_text())
        tags = resolve_version(cfg, "s3-tickets@challenger").tags
        assert tags["thaw.dvc_remote"] == f"s3://{BUCKET}/datasets"
        stored = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
        md5 = tags["thaw.curated.train.md5"]
        assert f"datasets/files/md5/{md5[:2]}/{md5[2:]}" in stored
        assert verify_lineage(cfg, tags).problems == ()

        shutil.rmtree(workspace / "datasets")
        shutil.rmtree(workspace / ".dvc" / "cache", ignore_errors=True)
        restored = restore_data(cfg, "s3-tickets@challenger", tmp_path / "restored")
        for split, path in restored.items():
            assert file_md5(path) == tags[f"thaw.curated.{split}.md5"]

        s3.delete_object(Bucket=BUCKET, Key=f"datasets/files/md5/{md5[:2]}/{md5[2:]}")
        assert verify_lineage(cfg, tags).problems == (
            f"train md5 {md5} is missing from the remote s3://{BUCKET}/datasets",
        )
