"""The Feast repository of the project: ``feature_store.yaml`` and ``definitions.py`` (definitions only)."""
