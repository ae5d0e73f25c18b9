"""Pure domain model: no framework imports."""
