"""Every method module; importing this package registers them all."""

from tf_translate.methods import cyclegan, dtn, fast_style, gatys, pix2pix, stargan  # noqa: F401
