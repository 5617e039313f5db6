"""Detectors: one module per detector, each registered with :func:`clipbench.registry.register_detector`."""
