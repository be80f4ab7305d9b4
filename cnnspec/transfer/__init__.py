"""Transfer learning: phase 2 fine-tuning, feature extraction, classifiers on features.

Imports Keras/TensorFlow only inside functions. The backbone itself is a spec node
(``cnnspec.spec.backbone``) built by ``cnnspec.build.backbone``.
"""
