"""Reports that exist only for the tests: one slow enough to cancel, ones that fail."""

import os
import time
from pathlib import Path

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
