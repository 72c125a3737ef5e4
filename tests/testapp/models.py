"""Models of the tests' own: keys other than an integer."""

import uuid

from django.db import models


class Account(models.Model):
    """Whom an invoice is for (not shop's Customer: the demo's seed truncates shop's tables)."""

    name = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.name


class Invoice(models.Model):
    """A UUID primary key, as many projects have: PostgreSQL has no max() of it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    number = models.CharField(max_length=20, unique=True)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="invoices")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    reference = models.UUIDField(default=uuid.uuid4)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.number


class Tag(models.Model):
    """A text primary key."""

    code = models.CharField(max_length=40, primary_key=True)
    label = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.code


class Stock(models.Model):
    """A composite primary key: a report cannot be cut into ranges of it (reports.E008)."""

    pk = models.CompositePrimaryKey("warehouse", "sku")
    warehouse = models.CharField(max_length=10)
    sku = models.CharField(max_length=20)
    quantity = models.IntegerField()

    def __str__(self) -> str:
        return f"{self.warehouse}/{self.sku}"
