"""Files in storage: S3 through a real local S3 HTTP server, filenames, retention, deletion."""

import csv
import datetime as dt
import io
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages

from project.settings import reports_storage_config
from reports.files import reports_storage
from reports.models import ReportJob, Status
from reports.sweeper import expire_files
from reports.tasks import run_in_foreground
from shop import demo
from shop.models import Order
from tests.helpers import JOBS_URL, ended, fetch, s3_env_for, wait_for

ORDERS = 3000


@pytest.fixture
def s3_env(s3_endpoint, settings):
    """A fresh private bucket; this process and the worker processes both store files in it."""
    env = s3_env_for(s3_endpoint)
    settings.STORAGES = {**settings.STORAGES, "reports": reports_storage_config(env)}
    return env


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_s3_flow_worker_bucket_signed_redirect_download(s3_env, alice_client, make_user, run_worker):
    demo.seed(ORDERS)
    bucket, client = s3_env["AWS_STORAGE_BUCKET_NAME"], s3_env.pop("client")
    response = alice_client.post(
        JOBS_URL, data=json.dumps({"report": "orders", "format": "csv"}), content_type="application/json"
    )
    assert response.status_code == 202
    job_id = response.json()["id"]
    run_worker(**s3_env)

    job = ReportJob.objects.get(pk=job_id)
    assert job.status == Status.SUCCEEDED
    objects = client.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in objects] == [job.file.name]
    assert objects[0]["Size"] == job.file_size
    acl = client.get_object_acl(Bucket=bucket, Key=job.file.name)
    # private
    assert not [g for g in acl["Grants"] if g["Grantee"].get("URI", "").endswith("AllUsers")]

    redirect = alice_client.get(f"/reports/jobs/{job_id}/download/")
    assert redirect.status_code == 302
    signed = redirect["Location"]
    assert signed.startswith(s3_env["AWS_S3_ENDPOINT_URL"]) and "X-Amz-Signature" in signed
    status, data, headers = fetch(signed)
    assert status == 200
    assert headers["Content-Disposition"].startswith('attachment; filename="Orders ')
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert [int(r[0]) for r in rows[1:]] == list(Order.objects.order_by("pk").values_list("pk", flat=True))

    unsigned = signed.split("?")[0]
    # the object is not public
    assert fetch(unsigned)[0] == 403
    # Signed at click time and short-lived. (moto does not enforce X-Amz-Expires, so the expiry itself
    # is S3's to apply: we check the URL asks for it.)
    query = parse_qs(urlsplit(signed).query)
    assert query["X-Amz-Expires"] == ["3"]
    signed_at = dt.datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    assert abs((dt.datetime.now(dt.UTC) - signed_at).total_seconds()) < 10
    time.sleep(1.1)
    # a new one per click
    assert alice_client.get(f"/reports/jobs/{job_id}/download/")["Location"] != signed

    mallory = make_user("mallory")
    alice_client.force_login(mallory)
    assert alice_client.get(f"/reports/jobs/{job_id}/download/").status_code == 404


@pytest.mark.django_db
def test_expired_files_are_deleted_and_the_download_answers_410(alice, alice_client):
    storage = reports_storage()
    old, fresh = (
        ReportJob.objects.create(owner=alice, report="orders", format="csv", status=Status.SUCCEEDED, finished_at=when)
        for when in (dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.datetime.now(dt.UTC))
    )
    for job in (old, fresh):
        job.file.name = storage.save(f"test/{job.pk}.csv", ContentFile(b"id\r\n1\r\n"))
        job.save()
    old_name = old.file.name
    assert expire_files() == 1
    old.refresh_from_db()
    assert old.status == Status.EXPIRED and not old.file
    assert not storage.exists(old_name)
    assert storage.exists(fresh.file.name)
    response = alice_client.get(f"/reports/jobs/{old.pk}/download/")
    assert response.status_code == 410 and b"expired" in response.content
    assert alice_client.get(f"{JOBS_URL}{old.pk}/").json()["status"] == "expired"


@pytest.mark.django_db
def test_deleting_a_job_deletes_its_file(alice):
    storage = reports_storage()
    job = ReportJob.objects.create(owner=alice, report="orders", format="csv", status=Status.SUCCEEDED)
    job.file.name = storage.save(f"test/{job.pk}.csv", ContentFile(b"x"))
    job.save()
    name = job.file.name
    ReportJob.objects.filter(pk=job.pk).delete()
    assert not storage.exists(name)


@pytest.mark.django_db
def test_download_has_the_right_type_and_an_rfc6266_filename_for_any_title(alice, alice_client):
    storage = reports_storage()
    job = ReportJob.objects.create(
        owner=alice,
        report="relatorio",
        format="xlsx",
        status=Status.SUCCEEDED,
        created_at=dt.datetime(2026, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
    )
    job.file.name = storage.save(f"test/{job.pk}.xlsx", ContentFile(b"PK"))
    job.save()
    response = alice_client.get(f"/reports/jobs/{job.pk}/download/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert response["Content-Disposition"] == (
        "attachment; filename*=utf-8''Relat%C3%B3rio%20vendas2025%20%E2%9C%93%202026-02-03%20040506.xlsx"
    )
    assert b"".join(response.streaming_content) == b"PK"


def test_storages_alias_is_the_filesystem_without_a_bucket():
    assert reports_storage_config({})["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    assert storages["reports"].__class__.__name__ == "FileSystemStorage"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_segments_on_s3_go_through_the_bucket_and_only_the_file_stays(s3_env, alice_client, start_worker, tmp_path):
    """Workers that share no disk (each its own VAR_DIR) share the bucket: segments are objects there."""
    demo.seed(ORDERS)
    bucket, client = s3_env["AWS_STORAGE_BUCKET_NAME"], s3_env.pop("client")
    response = alice_client.post(
        JOBS_URL, data=json.dumps({"report": "orders", "format": "json"}), content_type="application/json"
    )
    job_id = response.json()["id"]
    for n in range(2):
        start_worker(**s3_env, VAR_DIR=tmp_path / f"worker{n}", REPORTS_SEGMENT_ROWS=500, REPORTS_CHUNK_SIZE=200)
    deadline = time.monotonic() + 60
    while ReportJob.objects.get(pk=job_id).status != Status.SUCCEEDED and time.monotonic() < deadline:
        time.sleep(0.1)

    job = ReportJob.objects.get(pk=job_id)
    assert job.status == Status.SUCCEEDED and job.rows_done == ORDERS
    assert [s.rows_done for s in job.segments.all()] == [500] * 6
    keys = lambda: [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]  # noqa: E731
    wait_for(lambda: keys() == [job.file.name], timeout=10, message="the segment objects to go")
    status, data, _ = fetch(alice_client.get(f"/reports/jobs/{job_id}/download/")["Location"])
    assert status == 200
    assert [o["id"] for o in json.loads(data)] == list(Order.objects.order_by("pk").values_list("pk", flat=True))


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fmt", ["csv", "json", "xlsx"])
def test_big_segments_are_copied_into_the_file_by_s3_itself(s3_env, alice, settings, monkeypatch, fmt):
    """Segments of 5 MiB or more become parts of a multipart upload copied by S3 (UploadPartCopy); the
    file is the one the filesystem storage makes from the same segments."""
    from django.db import connection

    from reports import assembly

    demo.seed(60_000)
    # notes of 384 hex characters: 30 MB of CSV, 14 MB of XLSX
    with connection.cursor() as cursor:
        cursor.execute("UPDATE shop_order SET note = " + " || ".join(f"md5(id::text || '{c}')" for c in "abcdefghijkl"))
    client = s3_env.pop("client")
    copied = []
    original_run = assembly.S3Assembly.run
    monkeypatch.setattr(
        assembly.S3Assembly, "run", lambda self, pieces: (original_run(self, pieces), copied.append(self.copied))[0]
    )
    settings.REPORTS_SEGMENT_ROWS = 30_000
    job = ReportJob.objects.create(owner=alice, report="orders", format=fmt)
    assert run_in_foreground(job) and job.status == Status.SUCCEEDED, job.error
    on_s3 = client.get_object(Bucket=s3_env["AWS_STORAGE_BUCKET_NAME"], Key=job.file.name)
    # a multipart upload of 3 or 4 parts
    assert on_s3["ETag"].endswith('-4"') or on_s3["ETag"].endswith('-3"')
    # Both segments (the first after the part that starts with the header); XLSX's deflated first
    # segment is too small to give a part to the header and keep one of its own.
    assert copied == [1 if fmt == "xlsx" else 2]
    settings.STORAGES = {**settings.STORAGES, "reports": reports_storage_config({})}
    again = ReportJob.objects.create(owner=alice, report="orders", format=fmt)
    assert run_in_foreground(again) and again.status == Status.SUCCEEDED
    with again.file.open("rb") as fh:
        assert on_s3["Body"].read() == fh.read()


SCALE_ROWS = 120_000


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_three_workers_sharing_no_disk_write_what_one_process_writes(
    s3_env, alice, alice_client, settings, start_worker, tmp_path, fmt
):
    """Scale-out: three worker processes, each with a VAR_DIR of its own (nothing shared but PostgreSQL,
    Redis and the bucket), all take segments of one report, and the file is byte for byte what one
    process writes with the same segments."""
    s3_env.pop("client")
    segment_rows = SCALE_ROWS // 12
    demo.seed(SCALE_ROWS)
    settings.REPORTS_SEGMENT_ROWS = segment_rows
    one = ReportJob.objects.create(owner=alice, report="orders", format=fmt)
    assert run_in_foreground(one) and one.status == Status.SUCCEEDED, one.error
    # (from the bucket)
    with reports_storage().open(one.file.name, "rb") as fh:
        expected = fh.read()
    for n in range(3):
        start_worker(**s3_env, VAR_DIR=tmp_path / f"worker{n}", REPORTS_SEGMENT_ROWS=segment_rows)
    response = alice_client.post(
        JOBS_URL, data=json.dumps({"report": "orders", "format": fmt}), content_type="application/json"
    )
    job = ended(response.json()["id"], timeout=120)
    assert job.status == Status.SUCCEEDED, job.error
    # all three wrote
    assert job.segments.count() == 12 and len({s.worker for s in job.segments.all()}) == 3
    status, data, _ = fetch(alice_client.get(f"/reports/jobs/{job.pk}/download/")["Location"])
    assert status == 200 and data == expected
