"""SQLAlchemy Core storage: schema, engine, ticket repository and unit of work."""
