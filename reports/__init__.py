"""Background reports for Django. Declare reports in your app's reports.py:

import reports

@reports.register
class OrdersReport(reports.Report):
    slug = "orders"
    model = Order
    columns = ["id", "customer__name", "amount"]
    filters = [reports.Filter("status")]
"""

import os

# One Polars thread per process: reports scale by worker processes (one per core, each writing its own
# segments), and a worker already reads the next batch on a thread while it formats this one. More
# Polars threads per worker bought no speed in the benchmark, only memory (an allocator arena each).
# Polars reads this once, when it is first imported; set it yourself to choose another number.
os.environ.setdefault("POLARS_MAX_THREADS", "1")

from .definitions import Column, Filter, ParamsInvalid, Report, RequestInvalid  # noqa: E402
from .registry import AlreadyRegistered, NotRegistered, all_reports, get_report, register  # noqa: E402

__all__ = [
    "AlreadyRegistered",
    "Column",
    "Filter",
    "NotRegistered",
    "ParamsInvalid",
    "RequestInvalid",
    "Report",
    "all_reports",
    "get_report",
    "register",
]
