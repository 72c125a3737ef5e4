import csv
import html as html_module
import io
import json

import pytest
from django.contrib import admin
from django.test import RequestFactory

from reports.admin_export import changelist_query
from reports.admin_reports import admin_report_slug
from reports.definitions import RequestInvalid
from reports.models import ReportJob, Status
from reports.registry import get_report
from reports.tasks import run_in_foreground
from shop import demo
from shop.admin import OrderAdmin
from shop.models import Order
from tests.helpers import JOBS_URL

pytestmark = pytest.mark.django_db
SLUG = admin_report_slug(Order)
REPORT = get_report(SLUG)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"ids": []},
        {"ids": "1,2"},
        {"ids": list(range(10_001))},
        {"query": "x" * 2001},
        {"query": 5},
        {"ids": [1], "query": ""},
        {"status__exact": "paid"},
        ["ids"],
        {"ids": ["x"]},
        {"ids": [{}]},
        {"ids": [float("inf")]},
        {"ids": [float("nan")]},
        {"ids": [1.5]},
        {"ids": [True]},
        {"ids": [10**30]},
        {"ids": ["1; DROP TABLE shop_order"]},
        {"ids": [None]},
        {"ids": [[1]]},
        {"ids": ["1e400"]},
    ],
)
def test_admin_export_params_are_ids_or_a_changelist_query_only(params):
    with pytest.raises(RequestInvalid):
        REPORT.clean_params(params)


def test_ids_are_primary_keys_of_the_model():
    assert REPORT.clean_params({"ids": ["3", 4, 4]}) == {"ids": [3, 4]}


@pytest.fixture
def staff(make_user):
    return make_user("staff", perms=["shop.view_order"], is_staff=True)


def post_export(client, params, fmt="csv"):
    body = json.dumps({"report": SLUG, "format": fmt, "params": params})
    return client.post(JOBS_URL, data=body, content_type="application/json")


@pytest.mark.parametrize("ids", [["x"], [{}], ["abc", 1], [1e300], ["NaN"], [True], [10**30], [-1.0]])
def test_wrong_ids_through_the_api_are_400_and_make_no_job(client, staff, ids):
    client.force_login(staff)
    response = post_export(client, {"ids": ids})
    assert response.status_code == 400, response.content
    assert "ids" in response.json()["fields"]
    assert not ReportJob.objects.exists()


def test_unknown_ids_are_400_naming_them(client, staff):
    demo.seed(20)
    client.force_login(staff)
    known = list(Order.objects.values_list("pk", flat=True)[:2])
    response = post_export(client, {"ids": [*known, 999_999_999]})
    assert response.status_code == 400
    assert "999999999" in response.json()["fields"]["ids"][0]
    assert post_export(client, {"ids": known}).status_code == 202


@pytest.mark.parametrize(
    "query", ["customer__password__startswith=a", "amount__gte=lots", "created_at__gte=never", "bogus=1"]
)
def test_a_changelist_query_the_admin_refuses_is_400(client, staff, query):
    client.force_login(staff)
    response = post_export(client, {"query": query})
    assert response.status_code == 400, response.content
    assert "The admin does not accept these filters" in response.json()["fields"]["query"][0]
    assert not ReportJob.objects.exists()


def test_admin_exports_need_a_staff_user_through_the_api(client, make_user):
    # may view orders, not staff
    client.force_login(make_user("viewer", perms=["shop.view_order"]))
    response = post_export(client, {"query": ""})
    assert response.status_code == 403
    assert "staff access" in response.json()["error"] and "shop.view_order" in response.json()["error"]
    assert not ReportJob.objects.exists()


@pytest.fixture
def orders_of_portugal_only(monkeypatch):
    """An OrderAdmin that shows each user only the orders of Portugal (as admins that scope rows do)."""
    model_admin = admin.site._registry[Order]
    monkeypatch.setattr(
        model_admin, "get_queryset", lambda request: OrderAdmin.get_queryset(model_admin, request).filter(country="PT")
    )
    demo.seed(300)
    return Order.objects.filter(country="PT")


def test_ids_the_admin_does_not_show_the_user_are_refused(client, staff, orders_of_portugal_only):
    client.force_login(staff)
    hidden = Order.objects.exclude(country="PT").first().pk
    response = post_export(client, {"ids": [orders_of_portugal_only.first().pk, hidden]})
    assert response.status_code == 400 and str(hidden) in response.json()["fields"]["ids"][0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("params", [{"query": ""}, {"ids": "all"}])
def test_the_worker_reads_rows_through_the_model_admin(staff, orders_of_portugal_only, params):
    # ids stored when the admin showed every row, read now that it does not
    if params == {"ids": "all"}:
        params = {"ids": [str(pk) for pk in Order.objects.values_list("pk", flat=True)]}
    job = ReportJob.objects.create(owner=staff, report=SLUG, format="csv", params=params)
    assert run_in_foreground(job) and job.status == Status.SUCCEEDED, job.error
    with job.file.open("rb") as fh:
        ids = [row[0] for row in csv.reader(io.StringIO(fh.read().decode(), newline=""))][1:]
    assert ids == [str(pk) for pk in orders_of_portugal_only.order_by("pk").values_list("pk", flat=True)]
    assert 0 < len(ids) < 300


@pytest.mark.django_db(transaction=True)
def test_the_worker_checks_again_that_the_user_may_export(staff):
    demo.seed(20)
    job = ReportJob.objects.create(owner=staff, report=SLUG, format="csv", params={"query": ""})
    # lost staff status after asking
    type(staff).objects.filter(pk=staff.pk).update(is_staff=False)
    job.owner.refresh_from_db()
    run_in_foreground(job)
    job.refresh_from_db()
    assert job.status == Status.FAILED and not job.file
    assert (
        job.error
        == "staff may no longer run the 'Orders' report: it needs staff access and the 'shop.view_order' permission."
    )


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
        REPORT.get_report_queryset({"query": "bogus=1"}, user)


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
    # cancelling other people's jobs needs the change permission
    assert "cancel_jobs" not in page


def test_job_admin_actions_need_the_change_permission(client, make_user):
    from reports.models import ReportJob

    manager = make_user("manager", perms=["reports.view_reportjob", "reports.change_reportjob"], is_staff=True)
    # actions need rows
    ReportJob.objects.create(owner=make_user("other"), report="orders", format="csv")
    client.force_login(manager)
    page = client.get("/admin/reports/reportjob/").content.decode()
    assert "cancel_jobs" in page and "retry_jobs" in page


def test_job_admin_shows_the_segments_of_a_job(client, make_user):
    from reports.models import ReportJob, ReportSegment, Status

    staff = make_user("staff", perms=["reports.view_reportjob"], is_staff=True)
    job = ReportJob.objects.create(owner=staff, report="orders", format="json", status=Status.FAILED)
    ReportSegment.objects.create(job=job, index=0, upper_key=500, rows_planned=500, rows_done=500, status="done")
    ReportSegment.objects.create(
        job=job,
        index=1,
        after=500,
        upper_key=999,
        rows_planned=499,
        rows_done=120,
        status="failed",
        attempts=3,
        error="RuntimeError: <b>disk full</b>",
    )
    client.force_login(staff)
    page = client.get(f"/admin/reports/reportjob/{job.pk}/change/").content.decode()
    assert "Segments (the report" in page and "RuntimeError: &lt;b&gt;disk full&lt;/b&gt;" in page
    assert "<b>disk full</b>" not in page


def test_the_action_asks_for_the_columns_first_then_exports_the_chosen_ones(client, staff):
    demo.seed(30)
    client.force_login(staff)
    # the changelist shows paid orders only
    paid = Order.objects.filter(status="paid").order_by("pk")
    selected = [str(pk) for pk in paid.values_list("pk", flat=True)[:4]]
    page = client.post(
        "/admin/shop/order/?status__exact=paid", {"action": "export_xlsx_in_background", "_selected_action": selected}
    )
    assert page.status_code == 200 and not ReportJob.objects.exists()
    html = page.content.decode()
    assert "Export orders to Excel" in html and "4 selected orders" in html
    names = [spec.name for spec in REPORT.layout().column_specs()]
    assert all(f'name="columns" value="{name}" checked' in html for name in names)
    assert all(f'name="_selected_action" value="{pk}"' in html for pk in selected)
    assert 'name="select_across" value="0"' in html and 'name="export_columns" value="yes"' in html

    done = client.post(
        "/admin/shop/order/?status__exact=paid",
        {
            "action": "export_xlsx_in_background",
            "_selected_action": selected,
            "select_across": "0",
            "export_columns": "yes",
            "columns": ["number", "id"],
        },
        follow=True,
    )
    assert "Exporting 4 selected rows to Excel" in done.content.decode()
    job = ReportJob.objects.get()
    assert job.columns == ["number", "id"] and sorted(job.params["ids"]) == sorted(map(int, selected))
    assert job.format == "xlsx"

    across = client.post(
        "/admin/shop/order/?status__exact=paid",
        {
            "action": "export_csv_in_background",
            "_selected_action": selected,
            "select_across": "1",
            "export_columns": "yes",
            "columns": ["id", "secret"],
        },
        follow=True,
    )
    assert "The export could not start: Unknown column 'secret'." in html_module.unescape(across.content.decode())
    assert ReportJob.objects.count() == 1


# -- What an export shows: no more than the admin -----------------------------------------------


@pytest.fixture
def user_admin_with_export():
    """Django's own UserAdmin with the export mixin, on an admin site of the test's own."""
    from django.contrib.auth.admin import UserAdmin
    from django.contrib.auth.models import User

    from reports.admin_export import BackgroundExportMixin
    from reports.admin_reports import register_admin_exports
    from reports.registry import unregister

    class ExportingUserAdmin(BackgroundExportMixin, UserAdmin):
        pass

    site = admin.AdminSite(name="exports")
    site.register(User, ExportingUserAdmin)
    unregister(admin_report_slug(User))
    register_admin_exports(site)
    yield site._registry[User]
    unregister(admin_report_slug(User))


@pytest.mark.django_db(transaction=True)
def test_the_user_admins_export_has_its_list_columns_and_no_password(user_admin_with_export, make_user):
    from django.contrib.auth.models import User

    viewer = make_user("viewer", perms=["auth.view_user"], is_staff=True)
    make_user("victim", email="victim@example.com")
    report = get_report(admin_report_slug(User))
    assert [c.name for c in report.get_columns()] == ["username", "email", "first_name", "last_name", "is_staff"]
    job = ReportJob.objects.create(owner=viewer, report=report.slug, format="csv", params={"query": ""})
    assert run_in_foreground(job) and job.status == Status.SUCCEEDED, job.error
    with job.file.open("rb") as fh:
        text = fh.read().decode()
    assert text.splitlines()[0] == "Username,Email address,First name,Last name,Staff status"
    assert "victim@example.com" in text
    assert not any(user.password in text for user in User.objects.all())
    assert "md5$" not in text and "pbkdf2" not in text


def test_default_columns_are_the_form_fields_less_exclude_and_secrets_without_a_list_display():
    from reports.admin_export import BackgroundExportMixin, looks_secret
    from shop.models import Customer

    class FormOnly(BackgroundExportMixin, admin.ModelAdmin):
        exclude = ["city"]

    fields = FormOnly(Customer, admin.AdminSite()).get_export_columns()
    assert "city" not in fields and "name" in fields and "email" in fields
    assert [looks_secret(n) for n in ("password", "api_key", "reset_token", "secret_key", "otp_secret")] == [True] * 5
    assert not any(looks_secret(n) for n in ("name", "hashtag", "keyboard", "tokenizer_name", "country"))


def test_export_columns_may_name_any_field_explicitly():
    from django.contrib.auth.admin import UserAdmin
    from django.contrib.auth.models import User

    from reports.admin_export import BackgroundExportMixin

    class Explicit(BackgroundExportMixin, UserAdmin):
        export_columns = ["username", "password"]

    assert Explicit(User, admin.AdminSite()).get_export_columns() == ["username", "password"]
