import pytest
from django.contrib import admin
from django.test import RequestFactory

from reports.admin_export import admin_report_slug, changelist_query
from reports.definitions import ParamsInvalid
from reports.registry import get_report
from shop.models import Order

pytestmark = pytest.mark.django_db
REPORT = get_report(admin_report_slug(Order))


@pytest.mark.parametrize(
    "params",
    [{}, {"ids": []}, {"ids": "1,2"}, {"ids": list(range(10_001))}, {"query": "x" * 2001}, {"query": 5},
     {"ids": [1], "query": ""}, {"status__exact": "paid"}, ["ids"]],
)  # fmt: skip
def test_admin_export_params_are_ids_or_a_changelist_query_only(params):
    with pytest.raises(ParamsInvalid):
        REPORT.clean_params(params)


def test_ids_must_be_primary_keys():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        REPORT.clean_params({"ids": ["1; DROP TABLE shop_order"]})
    assert REPORT.clean_params({"ids": ["3", 4]}) == {"ids": [3, 4]}


def test_admin_exports_are_not_listed_on_the_report_page(alice_client):
    slugs = {r["slug"] for r in alice_client.get("/api/reports/").json()["reports"]}
    assert admin_report_slug(Order) not in slugs and "orders" in slugs


def test_the_action_is_offered_only_to_users_who_may_view_the_model(make_user):
    model_admin = admin.site._registry[Order]
    request = RequestFactory().get("/admin/shop/order/")
    request.user = make_user("viewer", perms=["shop.view_order"], is_staff=True)
    assert "export_csv_in_background" in model_admin.get_actions(request)
    request.user = make_user("other", perms=["shop.view_customer"], is_staff=True)
    assert "export_csv_in_background" not in model_admin.get_actions(request)


def test_unknown_changelist_filters_fail_the_run_not_the_server(make_user):
    from django.contrib.admin.options import IncorrectLookupParameters

    user = make_user("viewer", perms=["shop.view_order"], is_staff=True)
    with pytest.raises(IncorrectLookupParameters):
        REPORT.get_report_queryset({"query": "customer__password__startswith=a"}, user)


def test_the_changelist_query_keeps_filters_and_search_but_not_the_page():
    request = RequestFactory().get("/admin/shop/order/?status__exact=paid&q=Silva&p=3&_popup=1")
    assert changelist_query(request) == "status__exact=paid&q=Silva"


def test_job_admin_links_downloads_only_for_the_viewers_own_jobs(client, make_user):
    from reports.models import ReportJob, Status

    staff = make_user("staff", perms=["reports.view_reportjob"], is_staff=True)
    other = make_user("other")
    mine = ReportJob.objects.create(owner=staff, report="orders", format="csv", status=Status.SUCCEEDED)
    theirs = ReportJob.objects.create(owner=other, report="orders", format="csv", status=Status.SUCCEEDED)
    client.force_login(staff)
    page = client.get("/admin/reports/reportjob/").content.decode()
    assert f"/reports/jobs/{mine.pk}/download/" in page
    assert f"/reports/jobs/{theirs.pk}/download/" not in page and "owner only" in page
    assert "cancel_jobs" not in page  # cancelling other people's jobs needs the change permission


def test_job_admin_actions_need_the_change_permission(client, make_user):
    from reports.models import ReportJob

    manager = make_user("manager", perms=["reports.view_reportjob", "reports.change_reportjob"], is_staff=True)
    ReportJob.objects.create(owner=make_user("other"), report="orders", format="csv")  # actions need rows
    client.force_login(manager)
    page = client.get("/admin/reports/reportjob/").content.decode()
    assert "cancel_jobs" in page and "retry_jobs" in page


def test_job_admin_shows_the_parts_of_a_split_job(client, make_user):
    from reports.models import ReportJob, ReportPart, Status

    staff = make_user("staff", perms=["reports.view_reportjob"], is_staff=True)
    job = ReportJob.objects.create(owner=staff, report="orders", format="json", status=Status.FAILED)
    ReportPart.objects.create(job=job, index=0, upper=500, rows_total=500, rows_done=500, status="succeeded")
    ReportPart.objects.create(job=job, index=1, after=500, upper=999, rows_total=499, rows_done=120, status="failed",
                              attempts=3, error="RuntimeError: <b>disk full</b>")  # fmt: skip
    client.force_login(staff)
    page = client.get(f"/admin/reports/reportjob/{job.pk}/change/").content.decode()
    assert "Report parts" in page and "RuntimeError: &lt;b&gt;disk full&lt;/b&gt;" in page
    assert "<b>disk full</b>" not in page
