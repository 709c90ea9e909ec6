"""Relational storage: engine, schema, migrations. Adapters behind the services' ports."""
