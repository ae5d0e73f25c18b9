"""Input/output channels (configured in credentials.yml)."""
