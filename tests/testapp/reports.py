"""Reports that exist only for the tests: one slow enough to cancel, one that fails."""

import os
import time

import reports
from shop.models import Order


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
