"""cnnspec: a declarative CNN builder on Keras 3.

Importing this package (or ``cnnspec.spec``) never imports TensorFlow; only ``cnnspec.build``
and the modules that train, export or draw models do.
"""

__version__ = "0.1.0"
