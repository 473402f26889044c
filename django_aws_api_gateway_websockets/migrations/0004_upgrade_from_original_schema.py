"""Bring a database created by the original package up to this library's schema.

The original package's first migration is also named ``0001_initial``, so on a database it
created Django treats ours as applied and never builds our tables. Those tables have the same
names, but lack columns this library added and have narrower or nullable columns. This step
compares each table with the models and adds or widens what differs; on a database our own
``0001_initial`` created it finds nothing to do.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

APP_LABEL = "django_aws_api_gateway_websockets"
TEXT_TYPES = {"CharField", "TextField"}


def _column_shape(
    connection: Any, cursor: Any, table: str
) -> dict[str, tuple[str, int | None, bool]]:
    """Map each column to (Django field type, length or None, nullable)."""
    shape = {}
    for info in connection.introspection.get_table_description(cursor, table):
        try:
            field_type = connection.introspection.get_field_type(info.type_code, info)
        except KeyError:
            field_type = ""
        size = info.display_size or info.internal_size
        shape[info.name] = (field_type, size if size and size > 0 else None, bool(info.null_ok))
    return shape


def _old_field(field: models.Field, field_type: str, size: int | None, null: bool) -> models.Field:
    """A field describing the column as the database has it now."""
    if field_type == "CharField":
        old: models.Field = models.CharField(max_length=size or 255, null=null, blank=True)
    else:
        old = models.TextField(null=null, blank=True)
    old.set_attributes_from_name(field.name)
    old.model = field.model
    return old


def _needs_change(field: models.Field, field_type: str, size: int | None, null: bool) -> bool:
    if null and not field.null:
        return True
    if isinstance(field, models.TextField):
        return field_type == "CharField"
    if isinstance(field, models.CharField) and size is not None:
        return size < field.max_length
    return False


def upgrade(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
    for model in apps.get_app_config(APP_LABEL).get_models():
        table = model._meta.db_table
        if table not in tables:
            continue
        with connection.cursor() as cursor:
            shape = _column_shape(connection, cursor, table)
        fields = model._meta.local_concrete_fields
        # First the rows: on SQLite any alteration rebuilds the whole table under the new
        # definition, so a NULL left in a column about to be NOT NULL would abort it.
        for field in fields:
            if field.column in shape and shape[field.column][2] and not field.null:
                if isinstance(field, models.CharField | models.TextField):
                    model._base_manager.filter(**{f"{field.name}__isnull": True}).update(
                        **{field.name: ""}
                    )
        for field in fields:
            if field.column not in shape:
                schema_editor.add_field(model, field)
                continue
            field_type, size, null = shape[field.column]
            if field_type not in TEXT_TYPES or not isinstance(
                field, models.CharField | models.TextField
            ):
                continue
            if _needs_change(field, field_type, size, null):
                schema_editor.alter_field(model, _old_field(field, field_type, size, null), field)
        with connection.cursor() as cursor:
            # After the loop, so that a rebuild finds every column of the model in place.
            _release_unknown_columns(schema_editor, model, _column_shape(connection, cursor, table))
        with connection.cursor() as cursor:
            existing = set(connection.introspection.get_constraints(cursor, table))
        for index in model._meta.indexes:
            if index.name not in existing:
                schema_editor.add_index(model, index)
        # Under our names, so later migrations can find them (the original's own unique
        # index on the same columns stays: the data already satisfies both).
        for constraint in model._meta.constraints:
            if constraint.name not in existing:
                schema_editor.add_constraint(model, constraint)


def _release_unknown_columns(
    schema_editor: Any, model: Any, shape: dict[str, tuple[str, int | None, bool]]
) -> None:
    """Columns of later original releases that this library does not have (provisioning
    status, hashes...) are NOT NULL without a default: every INSERT of ours would fail.
    PostgreSQL makes them nullable, keeping their values. SQLite cannot: the table is rebuilt
    from the model (Django's own way of altering a SQLite table), which leaves them out."""
    known = {field.column for field in model._meta.local_concrete_fields}
    blocking = [column for column, (_, _, null) in shape.items() if column not in known and not null]
    if not blocking:
        return
    if schema_editor.connection.vendor == "postgresql":
        table = schema_editor.quote_name(model._meta.db_table)
        for column in blocking:
            name = schema_editor.quote_name(column)
            schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN {name} DROP NOT NULL")
    else:
        schema_editor._remake_table(model)


class Migration(migrations.Migration):
    dependencies = [
        (APP_LABEL, "0003_websockettoken_origin"),
    ]

    operations = [
        migrations.RunPython(upgrade, migrations.RunPython.noop, elidable=True),
    ]
