"""Building blocks of the networks: layers, builders, losses, perceptual features, augmentation."""
