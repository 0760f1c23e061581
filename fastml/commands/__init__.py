"""CLI verbs: one module per verb group, each with ``register(subparsers)``.

A command module must import quickly (no keras/hls4ml at import time): heavy imports go inside the
function that runs the verb.
"""
