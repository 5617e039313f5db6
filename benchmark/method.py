"""What defenses and detectors share: a typed config validated on construction, a description,
a source, a provenance, and the name they are registered under (set by the registry)."""

from __future__ import annotations

from typing import Any, ClassVar


class Method:
    """Base of :class:`clipbench.defenses.base.Defense` and :class:`clipbench.detectors.base.Detector`."""

    Config: ClassVar[type]
    description: ClassVar[str] = ""
    source: ClassVar[str] = ""
    provenance: ClassVar[str] = "official method"
    registry_name: ClassVar[str] = ""

    def __init__(self, config: Any):
        validate = getattr(config, "validate", None)
        if validate is not None:
            validate()
        self.config = config

    @classmethod
    def default_config(cls) -> Any:
        return cls.Config()
