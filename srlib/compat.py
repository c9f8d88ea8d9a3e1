"""Make ``import torchvision`` (and so ``import timm``) work on a CPU torch with a CUDA torchvision wheel.

The registry's torchvision wheel is a CUDA build. On a CPU-only torch its C extension does not load,
and ``torchvision/_meta_registrations.py`` then fails at import with
``operator torchvision::nms does not exist`` because it registers fake kernels for ``nms`` and
``qnms``. Defining those two operator *schemas* (no kernels) lets the pure-Python parts import;
calling the ops still fails, and SR-Bench never calls them.

Where torchvision imports normally this module does nothing.
"""

import sys

import torch

# Schemas as torchvision's C++ extension declares them.
_MISSING_OP_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # keeps the fragment alive for the life of the process


def _has_op(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def ensure_torchvision() -> list[str]:
    """Import torchvision, defining the operator schemas a CPU torch lacks if that import fails.

    Returns the names of the operators it had to define: empty where torchvision imports normally.
    Raises the original error when the failure is anything other than a missing ``torchvision::`` op.
    """
    global _library
    try:
        import torchvision  # noqa: F401

        return []
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
    # Drop the half-imported package so the retry starts clean.
    for module in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[module]
    defined = [name for name in _MISSING_OP_SCHEMAS if not _has_op(name)]
    if defined:
        _library = _library or torch.library.Library("torchvision", "FRAGMENT")
        for name in defined:
            _library.define(_MISSING_OP_SCHEMAS[name])
    import torchvision  # noqa: F401,F811

    return defined


def import_timm():
    """Return the ``timm`` module, importable on any torch / torchvision pairing."""
    ensure_torchvision()
    import timm

    return timm
