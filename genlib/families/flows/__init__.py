"""Normalizing flows: NICE, RealNVP and Glow on the digits (``model.py``; their invertible layers in
``layers.py``), trained by exact maximum likelihood on the dequantized 8-bit digits."""
from genlib.families.flows.layers import (ActNorm, AffineCoupling, FlowLayer, InvConv1x1, MLPAdditiveCoupling,
                                          Scaling, Squeeze, checkerboard)
from genlib.families.flows.model import (NICE, FlowConfig, FlowSampling, Glow, GlowConfig, NICEConfig, NormalizingFlow,
                                         RealNVP, RealNVPConfig, Split)

__all__ = ["ActNorm", "AffineCoupling", "FlowConfig", "FlowLayer", "FlowSampling", "Glow", "GlowConfig", "InvConv1x1",
           "MLPAdditiveCoupling", "NICE", "NICEConfig", "NormalizingFlow", "RealNVP", "RealNVPConfig", "Scaling",
           "Split", "Squeeze", "checkerboard"]
