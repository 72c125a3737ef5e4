"""Background reports for Django. Declare reports in your app's reports.py:

import reports

@reports.register
class OrdersReport(reports.Report):
    slug = "orders"
    model = Order
    columns = ["id", "customer__name", "amount"]
    filters = [reports.Filter("status")]
"""

from .definitions import Column, Filter, ParamsInvalid, Report
from .registry import AlreadyRegistered, NotRegistered, all_reports, get_report, register

__all__ = [
    "AlreadyRegistered",
    "Column",
    "Filter",
    "NotRegistered",
    "ParamsInvalid",
    "Report",
    "all_reports",
    "get_report",
    "register",
]
