"""thaw: adapt a pretrained text encoder to your labelled text, traceably."""

__version__ = "0.1.0"
