"""Issue 23: the endpoint a request called (a dimension of usage analytics), and the model
name the client asked for when the gateway served an alias. Records written before this
were OpenAI-compatible calls, the coding endpoint's being the ones a plan term paid."""

from django.db import migrations, models


def coding_endpoint(apps, schema_editor):
    UsageRecord = apps.get_model("usage", "UsageRecord")
    UsageRecord.objects.filter(plan_term_id__isnull=False).update(endpoint="coding")


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0002_plan_requests"),
    ]

    operations = [
        migrations.AddField(
            model_name="usagerecord",
            name="endpoint",
            field=models.CharField(
                choices=[
                    ("openai", "OpenAI-compatible"),
                    ("coding", "Coding plan (OpenAI-compatible)"),
                    ("anthropic", "Anthropic-compatible"),
                ],
                default="openai",
                max_length=16,
                verbose_name="endpoint",
            ),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="requested_model",
            field=models.CharField(blank=True, max_length=100, verbose_name="requested model"),
        ),
        migrations.RunPython(coding_endpoint, migrations.RunPython.noop),
    ]
