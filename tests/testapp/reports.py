"""Reports that exist only for the tests: one slow enough to cancel, ones that fail."""

import os
import signal
import time
from pathlib import Path

import reports
from shop.models import Order
from shop.reports import OrdersReport

from .models import Invoice, Tag


@reports.register
class SlowOrdersReport(reports.Report):
    slug = "slow-orders"
    title = "Slow orders"
    model = Order
    columns = ["id", reports.Column("slow", kind="integer", fields=["id"])]
    permission = "shop.view_order"

    def value_slow(self, row):
        time.sleep(float(os.environ.get("SLOW_REPORT_SECONDS_PER_ROW", "0.002")))
        return row["id"]


@reports.register
class ExplodingReport(reports.Report):
    slug = "exploding"
    title = "Exploding"
    model = Order
    columns = ["id", reports.Column("boom", fields=["id"])]
    permission = "shop.view_order"

    def value_boom(self, row):
        if row["id"] == 4321:
            raise ValueError("Exploded on purpose at order 4321")
        return "ok"


@reports.register
class UnicodeTitleReport(reports.Report):
    slug = "relatorio"
    title = "Relatório: vendas/2025 ✓"
    model = Order
    columns = ["id", "number"]
    permission = "shop.view_order"


@reports.register
class FlakyOrdersReport(reports.Report):
    """Raises at order FLAKY_ORDER_ID: once (a marker file remembers it across worker processes) or,
    with FLAKY_MODE=always, every time."""

    slug = "flaky-orders"
    title = "Flaky orders"
    model = Order
    columns = ["id", "number", reports.Column("check", fields=["id"])]
    permission = "shop.view_order"

    def value_check(self, row):
        if row["id"] == int(os.environ.get("FLAKY_ORDER_ID", "0")):
            marker = Path(os.environ["VAR_DIR"]) / f"flaky-{row['id']}"
            if os.environ.get("FLAKY_MODE") == "always" or not marker.exists():
                marker.touch()
                raise RuntimeError(f"Flaky on purpose at order {row['id']}")
        return "ok"


@reports.register
class PacedOrdersReport(reports.Report):
    """The orders report at a pace the tests can interrupt: it pauses PACED_SECONDS every 500th order
    (read at each row, so a test process writing the reference runs it at full speed)."""

    slug = "paced-orders"
    title = "Paced orders"
    model = Order
    columns = [*OrdersReport.columns, reports.Column("pace", kind="integer", fields=["id"])]
    permission = "shop.view_order"

    def value_pace(self, row):
        if row["id"] % 500 == 0:
            time.sleep(float(os.environ.get("PACED_SECONDS", "0")))
        return row["id"] % 7


@reports.register
class DeadlyOrdersReport(reports.Report):
    """Kills the process writing it at order DEADLY_ORDER_ID, every time (as an out-of-memory kill would)."""

    slug = "deadly-orders"
    title = "Deadly orders"
    model = Order
    columns = ["id", reports.Column("deadly", fields=["id"])]
    permission = "shop.view_order"

    def value_deadly(self, row):
        if row["id"] == int(os.environ.get("DEADLY_ORDER_ID", "0")):
            os.kill(os.getpid(), signal.SIGKILL)
        return "ok"


@reports.register
class InvoicesReport(reports.Report):
    slug = "invoices"
    title = "Invoices"
    model = Invoice
    columns = ["id", "number", "account__name", "amount", "reference", "created_at"]
    filters = [reports.Filter("amount", "gte", name="min_amount")]
    permission = "testapp.view_invoice"


@reports.register
class TagsReport(reports.Report):
    slug = "tags"
    title = "Tags"
    model = Tag
    columns = ["code", "label"]
    permission = "testapp.view_tag"
