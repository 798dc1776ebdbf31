"""burstkpn: burst denoising with Kernel Prediction Networks (Mildenhall et al., CVPR 2018).

Data flows one way: images -> bursts (`camera`, `noise`, `synth`, `data`) -> model
(`models`, `kernels`) -> output -> metrics (`metrics`, `evaluate`). Heavy or optional
dependencies are imported inside the functions that need them.
"""

from burstkpn.errors import BurstKPNError

__version__ = "0.1.0"
__all__ = ["BurstKPNError", "Denoised", "__version__", "denoise_burst", "write_denoised"]


def __getattr__(name: str):
    """The library entry points, imported on first use (``import burstkpn`` stays light)."""
    if name in ("denoise_burst", "Denoised"):
        from burstkpn import pipeline

        return getattr(pipeline, name)
    if name == "write_denoised":
        from burstkpn.io.outputs import write_denoised

        return write_denoised
    raise AttributeError(f"module 'burstkpn' has no attribute {name!r}")
