"""Burst denoising networks: `ModelConfig`, `build_model`, `predict` (see `kpn.py`, `unet.py`)."""

from burstkpn.models.kpn import DPN, KPN, ModelConfig, build_model, predict, unwrap

__all__ = ["DPN", "KPN", "ModelConfig", "build_model", "predict", "unwrap"]
