"""clipbench: a benchmark suite comparing backdoor defenses for CLIP models.

Importing this package is cheap: torch and open_clip are imported only by the modules that need
them, so ``clipbench list`` answers without loading them.
"""

__version__ = "0.1.0"
