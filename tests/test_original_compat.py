"""A project written against the original package's documentation, run against this library.

One test per documented promise of django-aws-api-gateway-websockets (its README and Read the
Docs pages), in our words. Where this library deliberately differs, the test asserts our
behaviour and docs/migrating.md says why.
"""

from __future__ import annotations

import pytest
from django.db import connection, migrations, models
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder

APP = "django_aws_api_gateway_websockets"

# The original package's migrations after its 0001_initial (names are facts: Django records them).
ORIGINAL_MIGRATIONS = [
    "0002_rename_author_websocketsession_user",
    "0003_auto_20220706_1018",
    "0004_auto_20221208_1227",
    "0005_apigatewayadditionalroute_deployed",
    "0006_auto_20221215_0847",
    "0007_connectionratelimit_websockettoken",
    "0008_remove_websockettoken_websocket_t_created_c55db3_idx_and_more",
    "0009_alter_connectionratelimit_table_and_more",
]


def _shape_like_original(executor: MigrationExecutor) -> None:
    """Leave the tables as the original's migrations left them: same table names, without the
    columns this library added, with its narrower and nullable columns, and its migration
    history recorded (its 0001_initial shares our first migration's name)."""
    executor.migrate([(APP, "0001_initial")])
    state = executor.loader.project_state((APP, "0001_initial"))
    Gateway = state.apps.get_model(APP, "ApiGateway")
    Gateway.objects.create(api_name="Legacy", target_base_endpoint="https://example.com/ws/")
    legacy = [
        migrations.AlterField(
            "apigateway", "target_base_endpoint", models.CharField(max_length=200, null=True)
        ),
        migrations.AlterField("apigateway", "stage_name", models.CharField(max_length=63)),
        migrations.AlterField("apigatewayadditionalroute", "name", models.CharField(max_length=63)),
        migrations.RemoveField("apigateway", "lambda_function_arn"),
        migrations.RemoveField("apigateway", "management_endpoint_url"),
    ]
    with connection.schema_editor() as editor:
        for operation in legacy:
            before = state.clone()
            operation.state_forwards(APP, state)
            operation.database_forwards(APP, editor, before, state)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Gateway._meta.db_table} SET target_base_endpoint = NULL")
    recorder = MigrationRecorder(connection)
    for name in ORIGINAL_MIGRATIONS:
        recorder.record_applied(APP, name)


@pytest.mark.django_db(transaction=True)
def test_migrate_upgrades_a_database_the_original_package_created():
    """Upgrade path: a project that ran the original's migrations installs this library and
    runs ``migrate``; its gateways must load and new rows must fit."""
    from django_aws_api_gateway_websockets.models import ApiGateway, ApiGatewayAdditionalRoute

    executor = MigrationExecutor(connection)
    executor.migrate([(APP, None)])
    try:
        _shape_like_original(MigrationExecutor(connection))
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

        gateway = ApiGateway.objects.get(api_name="Legacy")
        assert gateway.target_base_endpoint == ""
        assert gateway.lambda_function_arn == ""
        gateway.stage_name = "s" * 128
        gateway.save(update_fields=["stage_name"])
        route = ApiGatewayAdditionalRoute.objects.create(
            api_gateway=gateway, name="n" * 128, route_key="chat"
        )
        assert ApiGatewayAdditionalRoute.objects.get(pk=route.pk).name == "n" * 128
        with connection.cursor() as cursor:
            columns = {
                info.name: info
                for info in connection.introspection.get_table_description(
                    cursor, ApiGateway._meta.db_table
                )
            }
        assert not columns["target_base_endpoint"].null_ok
    finally:
        MigrationRecorder(connection).migration_qs.filter(
            app=APP, name__in=ORIGINAL_MIGRATIONS
        ).delete()
