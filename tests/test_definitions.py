import datetime as dt
from decimal import Decimal

import pytest
from django.db.models import F

import reports
from reports.definitions import RequestInvalid
from reports.registry import AlreadyRegistered, NotRegistered, get_report, register, unregister
from shop.models import Order
from tests.testapp.models import Stock


def test_demo_reports_are_discovered_from_reports_modules():
    slugs = {r.slug for r in reports.all_reports()}
    assert {"orders", "customers"} <= slugs


def test_unknown_slug_raises_not_registered():
    with pytest.raises(NotRegistered):
        get_report("nope")


def test_registering_a_second_report_under_a_taken_slug_fails():
    class Again(reports.Report):
        slug = "orders"
        model = Order
        columns = ["id"]

    with pytest.raises(AlreadyRegistered):
        register(Again)


@pytest.mark.parametrize(
    ("declaration", "code", "words"),
    [
        ({"model": Order, "columns": ["id", "customer__password"]}, "reports.E003", "password"),
        (
            {"model": Order, "columns": ["id", reports.Column("x", fields=["nope"])], "value_x": lambda s, r: 1},
            "reports.E003",
            "nope",
        ),
        (
            {"model": Order, "columns": ["id", reports.Column("net", expression=F("amount") - F("nope"))]},
            "reports.E003",
            "nope",
        ),
        ({"model": Order, "columns": []}, "reports.E002", "no columns"),
        ({"columns": ["id"]}, "reports.E001", "no model"),
        ({"model": Order, "columns": ["id"], "formats": ["csv", "docx"]}, "reports.E005", "docx"),
        ({"model": Order, "columns": [reports.Column("id", kind="money")]}, "reports.E004", "money"),
        ({"model": Order, "columns": ["id"], "filters": [reports.Filter("colour")]}, "reports.E006", "colour"),
        ({"model": Order, "columns": ["id"], "csv_delimiter": "§"}, "reports.E007", "not one ASCII character"),
        ({"model": Order, "columns": ["id"], "csv_delimiter": '"'}, "reports.E007", "not one ASCII character"),
        ({"model": Stock, "columns": ["sku", "quantity"]}, "reports.E008", "Stock has a composite primary key"),
    ],
)
def test_mistakes_in_a_declaration_are_reported_by_the_system_checks(declaration, code, words):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    register(type("Broken", (reports.Report,), {"slug": "broken", **declaration}))
    try:
        with pytest.raises(SystemCheckError, match=words) as raised:
            call_command("check")
        assert code in str(raised.value)
    finally:
        unregister("broken")


def test_the_demo_declarations_pass_the_system_checks():
    from django.core.management import call_command

    # raises SystemCheckError on any error
    call_command("check")


def test_column_kinds_and_labels_come_from_the_model():
    specs = {s.name: s for s in get_report("orders").layout().column_specs()}
    assert specs["amount"].kind == "decimal"
    assert specs["created_at"].kind == "datetime"
    assert specs["is_gift"].kind == "boolean"
    assert specs["customer__name"].label == "Customer"
    assert specs["note"].kind == "text"


def test_computed_columns_read_their_declared_fields():
    from reports.writers.base import frame_from_rows

    report = get_report("customers")
    assert report.layout().fetch_fields().count("email") == 1
    fetched = [None if s.kind != "text" else "x" for s in report.layout().fetch_specs()]
    fetched[report.layout().fetch_fields().index("email")] = "customer7@Mail.Example.org"
    frame = report.layout().frame_maker()(frame_from_rows(report.layout().fetch_specs(), [tuple(fetched)]))
    assert frame["email_domain"].to_list() == ["mail.example.org"]
    assert frame["email"].to_list() == ["customer7@Mail.Example.org"]
    assert list(frame.columns) == [s.name for s in report.layout().column_specs()]


def test_plain_reports_take_the_fetched_columns_as_they_are():
    from reports.writers.base import frame_from_rows

    report = get_report("orders")
    assert not report.layout().has_computed_columns()
    fetched = frame_from_rows(report.layout().fetch_specs(), [])
    assert report.layout().frame_maker()(fetched).columns == [s.name for s in report.layout().column_specs()]


class TestParams:
    report = get_report("orders")

    def test_valid_params_are_typed(self):
        cleaned = self.report.clean_params(
            {"status": "paid", "created_from": "2025-01-01", "min_amount": "10.5", "country": "BR"}
        )
        assert cleaned == {
            "status": "paid",
            "created_from": dt.date(2025, 1, 1),
            "min_amount": Decimal("10.5"),
            "country": "BR",
        }
        assert self.report.serialize_params(cleaned)["created_from"] == "2025-01-01"
        assert self.report.serialize_params(cleaned)["min_amount"] == "10.5"

    def test_empty_values_are_dropped(self):
        assert self.report.clean_params({"status": "", "country": None}) == {}
        assert self.report.clean_params(None) == {}

    @pytest.mark.parametrize(
        "name", ["customer__password", "amount__gte", "id__in", "__class__", "status__regex", "pk"]
    )
    def test_orm_lookups_from_the_request_are_unknown_filters(self, name):
        with pytest.raises(RequestInvalid) as exc:
            self.report.clean_params({name: "x"})
        assert "Unknown filter" in exc.value.errors[name][0]

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"status": "stolen"}, "status"),
            ({"created_from": "yesterday"}, "created_from"),
            ({"min_amount": "ten"}, "min_amount"),
            ({"min_amount": "1" * 40}, "min_amount"),
            ({"country": "BRA"}, "country"),
            ({"status": ["paid", "shipped"]}, "status"),
            ({"status": {"$ne": 1}}, "status"),
        ],
    )
    def test_wrong_values_get_field_errors(self, params, field):
        with pytest.raises(RequestInvalid) as exc:
            self.report.clean_params(params)
        assert list(exc.value.errors) == [field]

    def test_params_must_be_an_object(self):
        with pytest.raises(RequestInvalid) as exc:
            self.report.clean_params(["status", "paid"])
        assert "params" in exc.value.errors


@pytest.mark.django_db
def test_filters_apply_only_the_authors_lookups():
    report = get_report("orders")
    sql = str(report.get_report_queryset({"min_amount": "5", "created_to": "2025-02-01"}).query)
    assert '"shop_order"."amount" >= 5' in sql
    assert "2025-02-01" in sql


@pytest.mark.django_db
def test_default_permission_is_the_models_view_permission(make_user):
    report = get_report("customers")
    assert report.get_permission() == "shop.view_customer"
    assert report.has_permission(make_user("viewer", perms=["shop.view_customer"]))
    assert not report.has_permission(make_user("nobody", perms=[]))
