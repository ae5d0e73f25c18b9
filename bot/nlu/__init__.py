"""Custom Rasa graph components for Chinese complaints (referenced from config.yml)."""
