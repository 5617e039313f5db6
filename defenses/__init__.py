"""Defenses: one module per defense, each registered with :func:`clipbench.registry.register_defense`."""
