from django.db import migrations


class Migration(migrations.Migration):
    """One name per thing: a segment's last key is `upper_key` and a stored size `file_size`, as on jobs."""

    dependencies = [("reports", "0007_error_detail_schedule_paused_because")]

    operations = [
        migrations.RenameField("reportsegment", "upper", "upper_key"),
        migrations.RenameField("reportsegment", "bytes", "file_size"),
        migrations.RenameField("reportdownload", "bytes", "file_size"),
    ]
