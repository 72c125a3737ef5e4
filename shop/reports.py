from decimal import Decimal

from django import forms
from django.db.models import BooleanField, DecimalField, ExpressionWrapper, F, Q, Value
from django.db.models.functions import Coalesce

import reports

from .models import Customer, Order


@reports.register
class OrdersReport(reports.Report):
    slug = "orders"
    title = "Orders"
    description = "Every order with its customer, amount and status."
    model = Order
    columns = [
        "id",
        "number",
        reports.Column("customer__name", "Customer"),
        "country",
        "status",
        "amount",
        "discount",
        "quantity",
        "is_gift",
        "note",
        "created_at",
        "shipped_at",
    ]
    filters = [
        reports.Filter("status"),
        reports.Filter("country", form_field=forms.CharField(max_length=2, min_length=2)),
        reports.Filter("created_at", "date__gte", name="created_from", form_field=forms.DateField()),
        reports.Filter("created_at", "date__lte", name="created_to", form_field=forms.DateField()),
        reports.Filter("amount", "gte", name="min_amount", label="Minimum amount"),
    ]
    permission = "shop.view_order"


@reports.register
class OrderTotalsReport(OrdersReport):
    """Columns computed by the database (README, "Declaring a report"): as fast as plain ones."""

    slug = "order-totals"
    title = "Order totals"
    description = "Orders with what the database computes: the amount net of discount, whether shipped."
    columns = [
        # id … discount
        *OrdersReport.columns[:7],
        # Its digits declared, so every database gives the same text (SQLite computes it as a float).
        reports.Column(
            "net",
            "Net amount",
            expression=ExpressionWrapper(
                F("amount") - Coalesce(F("discount"), Value(Decimal("0"))),
                output_field=DecimalField(max_digits=15, decimal_places=2),
            ),
        ),
        "quantity",
        reports.Column(
            "shipped", "Shipped", expression=ExpressionWrapper(Q(shipped_at__isnull=False), output_field=BooleanField())
        ),
        "created_at",
        "shipped_at",
    ]


@reports.register
class CustomersReport(reports.Report):
    slug = "customers"
    title = "Customers"
    description = "Customers with their contact details; the e-mail domain is computed."
    model = Customer
    columns = [
        "id",
        "name",
        "email",
        reports.Column("email_domain", "E-mail domain", fields=["email"]),
        "country",
        "city",
        "is_active",
        "credit_limit",
        "notes",
        "created_at",
    ]
    filters = [
        reports.Filter("country", form_field=forms.CharField(max_length=2, min_length=2)),
        reports.Filter("is_active", form_field=forms.NullBooleanField()),
    ]

    def value_email_domain(self, row):
        return row["email"].rpartition("@")[2].lower()
