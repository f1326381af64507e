class ModelLoadError(ValueError):
    """A file or state dict is not a loadable ParagonSR2 checkpoint; the message says why."""
