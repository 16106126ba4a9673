"""Photo restoration: learned blind denoisers (``dncnn`` in ``model.py``, the U-Net ``resunet`` in
``resunet.py``) and super-resolution (``espcn``, x2/x4, in ``model.py``); scikit-image's and BM3D's
classical methods, noise and PSNR/SSIM in ``classical``; seamless tiled inference for photos of any
size in ``tiles``; one entry for every method in ``restore``; and the ``denoise`` / ``upscale`` CLI
subcommands in ``cli``."""
from genlib.families.restoration import classical, restore, tiles
from genlib.families.restoration.cli import COMMANDS
from genlib.families.restoration.model import DnCNN, DnCNNConfig, ESPCN, ESPCNConfig, preview_crops, psnr
from genlib.families.restoration.resunet import ResUNet, ResUNetConfig

__all__ = ["COMMANDS", "DnCNN", "DnCNNConfig", "ESPCN", "ESPCNConfig", "ResUNet", "ResUNetConfig",
           "classical", "preview_crops", "psnr", "restore", "tiles"]
