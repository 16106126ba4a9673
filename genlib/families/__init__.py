"""One module per model family; importing this package registers them all."""
from genlib.families import autoencoders, diffusion, gan  # noqa: F401
