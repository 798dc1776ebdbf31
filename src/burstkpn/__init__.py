"""burstkpn: burst denoising with Kernel Prediction Networks (Mildenhall et al., CVPR 2018).

Data flows one way: images -> bursts (`camera`, `noise`, `synth`, `data`) -> model
(`models`, `kernels`) -> output -> metrics (`metrics`, `evaluate`). Heavy or optional
dependencies are imported inside the functions that need them.
"""

from burstkpn.errors import BurstKPNError

__version__ = "0.1.0"
__all__ = ["BurstKPNError", "__version__"]
