"""fastml's private helpers: tool discovery, guards, locks, file readers, plugin loading.

Nothing here is part of the public API, and nothing here imports a stage, a model kind or a backend:
this package sits at the bottom of the layering (``ARCHITECTURE.md``), beside ``fastml.errors`` and
``fastml.types``.
"""
