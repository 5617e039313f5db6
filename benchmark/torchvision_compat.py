"""Make ``import torchvision`` work when its compiled operators cannot load.

The registry's torchvision 0.28.0 wheel is a CUDA build. With the CPU build of torch its compiled
library does not load, and ``torchvision._meta_registrations`` then fails with
``operator torchvision::nms does not exist`` because it registers fake kernels for ``nms`` and
``qnms`` unconditionally. open_clip imports torchvision for its transforms, so clipbench defines
those two operator schemas (without kernels) before torchvision is imported, and only when the
compiled operators are absent. The pure-Python parts of torchvision (transforms) then work; the
detection operators stay unavailable, and clipbench never calls them.
"""

from __future__ import annotations

import importlib.util
import sys

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None  # kept alive: dropping the Library object would unregister the schemas


def _compiled_ops_load() -> bool:
    """True when torchvision's compiled extension can be loaded into torch."""
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # no torchvision: nothing to patch
    import glob
    import os

    for location in spec.submodule_search_locations:
        for path in glob.glob(os.path.join(location, "_C*.so")):
            try:
                torch.ops.load_library(path)
                return True
            except OSError:
                return False
    return False


def ensure_torchvision_importable() -> None:
    """Define the ``torchvision::nms``/``qnms`` schemas if torchvision's compiled ops cannot load."""
    global _library
    if "torchvision" in sys.modules or _library is not None:
        return
    if _compiled_ops_load():
        return
    import torch

    try:
        if torch._C._dispatch_has_kernel_for_dispatch_key("torchvision::nms", "CPU"):
            return
    except RuntimeError:
        pass
    library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        library.define(schema)
    _library = library


def import_open_clip():
    """Import and return open_clip with the torchvision workaround applied first."""
    ensure_torchvision_importable()
    import open_clip

    return open_clip
