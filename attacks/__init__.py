"""Attacks: one module per attack, each registered with :func:`clipbench.registry.register_attack`."""
