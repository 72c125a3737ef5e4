import time

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError

from shop import demo
from shop.models import Order

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-reports"


class Command(BaseCommand):
    help = "Replace the demo shop's data with N deterministic orders (and N/20 customers), and create the demo login."

    def add_arguments(self, parser):
        parser.add_argument("--orders", type=int, default=10_000, help="How many orders (default 10,000).")
        parser.add_argument("--no-user", action="store_true", help="Do not create or reset the demo login.")
        parser.add_argument("--if-empty", action="store_true", help="Leave existing shop data as it is.")

    def handle(self, *args, orders, no_user, if_empty, verbosity, **options):
        if orders < 0 or orders > 100_000_000:
            raise CommandError("--orders must be between 0 and 100,000,000.")
        if if_empty and Order.objects.exists():
            self.stdout.write(f"The shop already has {Order.objects.count():,} orders; leaving them.")
        else:
            self.seed(orders, verbosity)
        if not no_user:
            self.stdout.write(f"Demo login: {ensure_demo_user()} / {DEMO_PASSWORD}")

    def seed(self, orders, verbosity):
        started = time.monotonic()

        def progress(done):
            if verbosity:
                self.stdout.write(f"\r  {done:,} / {orders:,} orders", ending="")
                self.stdout.flush()

        customers, orders = demo.seed(orders, progress=progress)
        if verbosity:
            self.stdout.write("")
        elapsed = time.monotonic() - started
        summary = f"Seeded {customers:,} customers and {orders:,} orders in {elapsed:.1f}s."
        self.stdout.write(self.style.SUCCESS(summary))


def ensure_demo_user() -> str:
    """A staff user who may view (and so export) the shop and manage their report jobs; not a superuser."""
    user, _ = get_user_model().objects.get_or_create(username=DEMO_USERNAME, defaults={"is_staff": True})
    user.is_staff = True
    user.set_password(DEMO_PASSWORD)
    user.save()
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["shop", "reports"]))
    return user.username
