"""Autoencoders on 28x28 digits: plain AE, denoising AE, VAE and conditional VAE (``model.py``), and
the tools that look inside them: latent maps, manifolds, interpolations, anomaly scores
(``analysis``)."""
from genlib.families.autoencoders import analysis
from genlib.families.autoencoders.model import (VAE, AEConfig, Autoencoder, ConditionalVAE, CVAEConfig, DAEConfig,
                                                DenoisingAutoencoder, VAEConfig)

__all__ = ["AEConfig", "Autoencoder", "CVAEConfig", "ConditionalVAE", "DAEConfig", "DenoisingAutoencoder", "VAE",
           "VAEConfig", "analysis"]
