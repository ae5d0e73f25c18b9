"""Service layer: use cases that take a unit of work."""
