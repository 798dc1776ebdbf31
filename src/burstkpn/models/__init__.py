"""Burst denoising networks: `ModelConfig`, `build_model`, `predict` (see `kpn.py`, `unet.py`); the joint
colour/raw model `PlanarKPN` with `PlanarConfig`, `predict_planar`, `planar_from_gray` (see `planar.py`)."""

from burstkpn.models.kpn import DPN, KPN, ModelConfig, build_model, predict, unwrap
from burstkpn.models.planar import PlanarConfig, PlanarKPN, build_planar, planar_from_gray, predict_planar

__all__ = ["DPN", "KPN", "ModelConfig", "PlanarConfig", "PlanarKPN", "build_model", "build_planar", "planar_from_gray",
           "predict", "predict_planar", "unwrap"]
