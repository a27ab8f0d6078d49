__version__ = "0.1.0"


def version():
    """Returns the installed `keras_addrop` version string."""
    return __version__
