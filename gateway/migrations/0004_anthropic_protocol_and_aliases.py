"""Issue 23: a route's protocol (an upstream may speak Anthropic's Messages API), and the
alias table mapping the Claude model names coding tools ask for to GLM models, with the
defaults BigModel's own Claude Code guide sets (opus and sonnet → GLM-4.7, haiku →
GLM-4.5-Air)."""

from django.db import migrations, models

DEFAULT_ALIASES = {
    "claude-*opus*": "glm-4.7",
    "claude-*sonnet*": "glm-4.7",
    "claude-*haiku*": "glm-4.5-air",
}


def aliases(apps, schema_editor):
    ModelAlias = apps.get_model("gateway", "ModelAlias")
    for pattern, model in DEFAULT_ALIASES.items():
        ModelAlias.objects.get_or_create(pattern=pattern, defaults={"model": model})


class Migration(migrations.Migration):
    dependencies = [
        ("gateway", "0003_coding_model_routes"),
    ]

    operations = [
        migrations.CreateModel(
            name="ModelAlias",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "pattern",
                    models.CharField(
                        help_text="A model name, or a pattern with * wildcards, e.g. claude-*sonnet*.",
                        max_length=100,
                        unique=True,
                        verbose_name="requested name",
                    ),
                ),
                ("model", models.CharField(max_length=64, verbose_name="served model")),
            ],
            options={
                "verbose_name": "model alias",
                "verbose_name_plural": "model aliases",
                "ordering": ["pattern"],
            },
        ),
        migrations.AddField(
            model_name="upstreamroute",
            name="protocol",
            field=models.CharField(
                choices=[
                    ("openai", "OpenAI-compatible (chat/completions)"),
                    ("anthropic", "Anthropic-compatible (v1/messages)"),
                ],
                default="openai",
                max_length=16,
                verbose_name="protocol",
            ),
        ),
        migrations.AlterField(
            model_name="upstreamroute",
            name="base_url",
            field=models.CharField(
                help_text='The upstream\'s base URL (…/api/paas/v4 for OpenAI-compatible, …/api/anthropic for Anthropic-compatible), or "simulator" for the built-in simulator.',
                max_length=300,
                verbose_name="base URL",
            ),
        ),
        migrations.RunPython(aliases, migrations.RunPython.noop),
    ]
