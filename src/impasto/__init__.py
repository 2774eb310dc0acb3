"""impasto: neural style transfer and GANs on PyTorch."""

__version__ = "0.1.0"
