"""Photo restoration: a learned blind denoiser (``dncnn``) and super-resolution (``espcn``, x2/x4) in
``model.py``; scikit-image's and BM3D's classical methods, noise and PSNR/SSIM in ``classical``;
seamless tiled inference for photos of any size in ``tiles``; one entry for every method in
``restore``; and the ``denoise`` / ``upscale`` CLI subcommands in ``cli``."""
from genlib.families.restoration import classical, restore, tiles
from genlib.families.restoration.cli import COMMANDS
from genlib.families.restoration.model import DnCNN, DnCNNConfig, ESPCN, ESPCNConfig, preview_crops, psnr

__all__ = ["COMMANDS", "DnCNN", "DnCNNConfig", "ESPCN", "ESPCNConfig", "classical", "preview_crops", "psnr",
           "restore", "tiles"]
