"""GANs: the textbook MLP GAN, DCGAN and a conditional DCGAN on 28x28 images (``model.py``, networks in
``networks.py``, losses and penalties in ``losses.py``), and a 2-D GAN to watch the game itself, stepped on
the background runner (``toy2d``)."""
from genlib.families.gan import toy2d
from genlib.families.gan.losses import (D_WIN_STEPS, LOSS_NAMES, LOSS_TITLES, LOSSES, DWinDetector, gradient_penalty,
                                        r1_penalty)
from genlib.families.gan.model import (DCGAN, GAN, MLPGAN, CGANConfig, ConditionalGAN, DCGANConfig, GANConfig,
                                       GANSampling, MLPGANConfig, slerp)
from genlib.families.gan.toy2d import ToyConfig, ToySession, ToySnapshot, start_toy_session

__all__ = ["CGANConfig", "ConditionalGAN", "DCGAN", "DCGANConfig", "DWinDetector", "D_WIN_STEPS", "GAN", "GANConfig",
           "GANSampling", "LOSSES", "LOSS_NAMES", "LOSS_TITLES", "MLPGAN", "MLPGANConfig", "ToyConfig", "ToySession",
           "ToySnapshot", "gradient_penalty", "r1_penalty", "slerp", "start_toy_session", "toy2d"]
