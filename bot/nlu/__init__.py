"""Custom Rasa graph components for Chinese complaints (referenced from config.yml)."""

from bot.rasa_ext.speedups import install as _install_speedups

_install_speedups()
