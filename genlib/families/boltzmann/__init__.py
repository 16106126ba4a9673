"""Boltzmann machines: a Bernoulli-Bernoulli RBM on binarized digits, trained by CD-k or persistent CD,
with log Z estimated by annealed importance sampling (``model.py``), and what the page shows of it
(``analysis.py``: filters, free energies, Gibbs chains, features against scikit-learn's BernoulliRBM)."""
from genlib.families.boltzmann.cli import COMMANDS
from genlib.families.boltzmann.model import (RBM, AISResult, RBMConfig, RBMSampling, ais_log_z, base_visible_bias,
                                             exact_log_z, pseudo_log_likelihood)

__all__ = ["COMMANDS", "AISResult", "RBM", "RBMConfig", "RBMSampling", "ais_log_z", "base_visible_bias", "exact_log_z",
           "pseudo_log_likelihood"]
