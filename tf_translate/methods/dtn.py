"""DTN: the Domain Transfer Network, G = g o f with f frozen."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tf_translate import replicas, seeding
from tf_translate.config import opt
from tf_translate.data import transfer
from tf_translate.data.images import DataError
from tf_translate.errors import UsageError
from tf_translate.methods.base import TranslationModel
from tf_translate.nn import classifier, layers, losses, networks
from tf_translate.nn.augment import diff_augment, stray_marks
from tf_translate.nn.layers import ImagePool
from tf_translate.registry import register

# The paper's settings (section 5): digits (SVHN -> MNIST) and faces (-> emoji, 64x64); and
# digits-small, the digits networks with a 3x lighter L_CONST, a 3x heavier L_TID, DiffAugment
# on D, L_SEM, a class-conditional D, an adversarially trained f and class alignment, measured on
# the embedded pair (1,500 source and 4,000 target training digits, where the paper had 531,131
# SVHN and 60,000 MNIST): the paper's objective oscillated there, and f, trained on the small
# source alone, carries how the source draws a digit (docs/methods/dtn.md).
PRESETS = {
    "digits": {"alpha": 15.0, "beta": 15.0, "tid": "l2", "gamma": 0.0, "semantic": 0.0, "d_augment": False,
               "conditional_d": False, "encoder_eps": 0.0, "align": False, "channels": 1, "decoder_blocks": 4,
               "disc_layers": 3, "disc_act": "relu", "one_stroke": False, "stroke": 0.0},
    "faces": {"alpha": 100.0, "beta": 1.0, "tid": "l2", "gamma": 0.05, "semantic": 0.0, "d_augment": False,
              "conditional_d": False, "encoder_eps": 0.0, "align": False, "channels": 3, "decoder_blocks": 5,
              "disc_layers": 6, "disc_act": "lrelu0.2", "one_stroke": False, "stroke": 0.0},
}
PRESETS["digits-small"] = {**PRESETS["digits"], "alpha": 5.0, "beta": 50.0, "d_augment": True, "semantic": 1.0,
                           "conditional_d": True, "encoder_eps": 0.3, "align": True, "one_stroke": True,
                           "stroke": 10.0}
# L_TID's distance (--tid): the paper's mean squared difference, or the mean absolute one
TID_DISTANCES = {"l2": losses.mse, "l1": losses.l1}
G_LOSSES = ("G_total", "GANG", "CONST", "TID", "TV", "SEM", "MS", "STROKE")
# a preset's values that flags override
FLAGGED = ("alpha", "beta", "tid", "gamma", "semantic", "d_augment", "conditional_d", "encoder_eps", "align",
           "one_stroke", "stroke", "channels")
# what reads the source's classes (L_SEM, a class-conditional D, the class alignment), and its value when off
NEED_CLASSES = {"semantic": 0.0, "conditional_d": False, "align": False}
# --align moves a source image's deviation from its class mean within the principal directions that hold
# this share of the target's variance in the class: the rest, f's features of the source alone, g could
# keep only with marks no target image has (docs/methods/dtn.md)
ALIGN_SHARE = 0.9
# stage 1b: h learns from the target images that f's classifier reads with this probability or more
# (--h-labels confident)
CONFIDENT = 0.9
# --h-labels: how stage 1b names the target images' classes for h
H_LABELS = ("centroid", "confident")


@dataclasses.dataclass(frozen=True)
class DTNConfig:
    preset: str = opt("digits-small", "digits | faces | digits-small: digits and faces are the paper's alpha, "
                                      "beta, gamma, channels and networks (digits: 32x32 grey, g of 4 blocks, D "
                                      "of 4 layers with ReLU; faces: 64x64 RGB, g of 5 blocks, D of 6 stride-2 "
                                      "blocks with LeakyReLU 0.2; no face-identity network or emoji set can be had "
                                      "offline, so faces is the configuration only); digits-small is digits with "
                                      "alpha 5, beta 50, --d-augment, --semantic 1, --conditional-d, "
                                      "--encoder-eps 0.3, --align, --one-stroke and --stroke 10, for small digit "
                                      "sets such as the embedded ones (measured, docs/methods/dtn.md)",
                        tuple(PRESETS))
    alpha: float | None = opt(None, "weight of L_CONST, f-constancy |f(x) - f(G(x))|^2 on the source; "
                                    "default: the preset's (digits 15, faces 100, digits-small 5)")
    beta: float | None = opt(None, "weight of L_TID, |x - G(x)|^2 (--tid) on the target; default: the preset's "
                                   "(digits 15, faces 1, digits-small 50)")
    tid: str | None = opt(None, "L_TID's distance: l2, the paper's mean squared |x - G(x)|^2, or l1, the mean "
                                "absolute |x - G(x)|, whose minimiser is a median: where f's features leave a "
                                "stroke's place uncertain, l2 pays g to draw the average (faint ink that breaks a "
                                "stroke), l1 to draw one place (not in the paper; on the embedded digits, three seeds "
                                "of the default: stray ink 2.2, 1.5, 1.7%% to 1.2, 2.6, 1.9%%, no gain; "
                                "docs/methods/dtn.md); default: the preset's (l2)",
                          tuple(TID_DISTANCES))
    gamma: float | None = opt(None, "weight of L_TV, anisotropic total variation of G(x); default: the "
                                    "preset's (digits 0, faces 0.05)")
    semantic: float | None = opt(None, "weight of L_SEM, the cross-entropy of h(G(x)) against a source x's class, "
                                       "h a target-domain classifier trained (stage 1b) on the target images "
                                       "labelled by f; not in the paper; default: the preset's (digits-small 1, "
                                       "off for an unlabelled source; digits and faces 0: off; measured on the "
                                       "embedded digits, docs/methods/dtn.md)")
    channels: int | None = opt(None, "image channels, 1 or 3 (default: the preset's, digits 1, faces 3)")
    g_steps: int = opt(2, "updates of g per update of D (the paper does not say; the public implementation "
                          "makes 2, and with 1 g fell behind D on the embedded digits)")
    g_average: float = opt(0.0, "decay of an exponential moving average of g's weights, used for validation, "
                                "samples and export (0: off, the latest g; 0.999 on the embedded digits drew "
                                "blends of a class's two modes, see docs/methods/dtn.md)")
    pool_size: int = opt(0, "D sees G(x) drawn from a history pool of this many past images of each kind "
                            "(Shrivastava et al. 2017, as CycleGAN's D does) instead of the latest batch; "
                            "0: off, as in the paper")
    instance_noise: float = opt(0.0, "standard deviation of Gaussian noise added to every image D sees, real "
                                      "and generated (Sonderby et al. 2016), so that D cannot separate them "
                                      "perfectly; 0: off, as in the paper")
    d_augment: bool | None = opt(None, "D sees every image, real and generated, randomly shifted (up to 1/8 of "
                                        "its side) and with --d-cutout's square blanked, differentiably "
                                        "(DiffAugment, Zhao et al. 2020), so that D cannot memorise a small target "
                                        "set; default: the preset's (on for digits-small; the paper has none)")
    d_cutout: float = opt(0.0, "with --d-augment, the side of the square DiffAugment blanks in every image D sees, "
                                "as a share of the image's side (DiffAugment's own: 0.5); 0: shifts only, as "
                                "measured on the embedded digits, where 0.5 breaks 28%% of real digits into pieces "
                                "and D then passes g's broken strokes (docs/methods/dtn.md)")
    conditional_d: bool | None = opt(None, "D judges each image as a drawing of its class: ternary logits of its "
                                            "own per class added to the shared ones (a class-conditional D, as "
                                            "in conditional GANs), G(x) of a source x read as x's class, a target "
                                            "image and its G(x) as the class h (else f's classifier) reads, so "
                                            "that a nine drawn as a real three is a fake nine; not in the paper; "
                                            "default: the preset's (on for digits-small; the paper's D is not)")
    align: bool | None = opt(None, "g draws a source image x from f(x) moved to the target's statistics of x's class "
                                    "(its class read by f's classifier): max(0, sum_k p_k(x) (mu_t[k] + r_k P_k (f(x) - "
                                    "mu_s[k]))), mu the class means of f's features on each domain's training images "
                                    "(the target's as h reads them, from the surer half of each class), P_k the "
                                    "projection onto the principal directions holding 90%% of the target's variance "
                                    "in the class, r_k the ratio of the target's within-class spread to the "
                                    "source's projected one, set before stage 2; L_CONST compares "
                                    "f(G(x)) with it. Class-conditional moment matching, not in the paper: f, trained "
                                    "on the source, spreads its digits less than the target's, and g then draws them "
                                    "alike; default: the preset's (on for digits-small; docs/methods/dtn.md)")
    align_covariance: bool = opt(True, "with --align, a source image's deviation within the principal directions "
                                       "is coloured so that the source's covariance of the class becomes the "
                                       "target's (CORAL, Sun et al. 2016, per class) instead of scaled by r_k; "
                                       "not in the paper; --no-align-covariance: the spread ratio, which stretched "
                                       "a class the source draws alike (seed 2's ones, r_1 1.8) into another "
                                       "(docs/methods/dtn.md)")
    one_stroke: bool | None = opt(None, "g ends in a layer that keeps each drawing's largest stroke (8-connected ink "
                                        "above 0.5, grown by a pixel) and any piece with --mark-below of its ink, and "
                                        "erases the rest, so that every loss and D see, and the export draws, no mark "
                                        "beside the digit (the marks carried f(x) for L_CONST, and no cost on them "
                                        "removed them, docs/methods/dtn.md); grey images only; not in the paper; "
                                        "default: the preset's (on for digits-small)")
    mark_below: float = opt(0.1, "with --one-stroke and L_STROKE, a piece of ink apart from a drawing's largest "
                                  "stroke is a mark, erased and costed, when it holds less than this share of the "
                                  "stroke's ink; a larger piece is kept, as a five's lifted bar (7.6 %% of MNIST's "
                                  "fives are in pieces); 1: every other piece (seed 1 then scrawled its fives to "
                                  "join them: 62 %% by 3-NN; docs/methods/dtn.md)")
    read_stroke: bool = opt(False, "L_CONST and L_SEM read G(x) of a source image with the ink apart from its "
                                   "largest stroke (8-connected ink above 0.5, grown by a pixel) erased, so that "
                                   "marks beside the digit and pieces of a broken stroke cannot carry f(x) (erasing "
                                   "them from the default's drawings raises their L_CONST 4-6 times); not in the "
                                   "paper; off: on the embedded digits g then drew more marks, nothing costing them "
                                   "(docs/methods/dtn.md)")
    stroke: float | None = opt(None, "weight of L_STROKE, the share of a drawing's ink (G(x) of source and target "
                                     "images; with --one-stroke as g drew it before its last layer) that "
                                     "--read-stroke's reading erases: marks beside a digit, pieces of a broken "
                                     "stroke, haze; not in the paper; default: the preset's (digits-small 10, "
                                     "where it clears the page that --one-stroke's layer erases; 0, off, in the "
                                     "paper's; without --one-stroke, 30 with --read-stroke on the embedded digits, "
                                     "three seeds: no fewer marks, fainter strokes; docs/methods/dtn.md)")
    stroke_after: int = opt(250, "stage 2 trains this many steps without L_STROKE while g learns to draw, then "
                                 "L_STROKE's weight rises linearly to --stroke's over as many more (from the first "
                                 "step it met g's first blurry drawings, and h read what it left at chance)")
    d_negatives: float = opt(0.0, "weight of D's loss on negatives: real target images with stray dots or dashes "
                                  "drawn apart from the digit, or with a gap cut through its stroke, shown to D as "
                                  "G(x) of a target (negative data augmentation, Sinha et al. 2021), so that D "
                                  "learns such marks as signs of a fake; grey images only; not in the paper; 0: off "
                                  "(1 on the embedded digits, three seeds: stray ink 1.6-2.1%%, every seed less "
                                  "varied, 0.76-0.78, and one drew ones as sevens; docs/methods/dtn.md)")
    mode_seeking: float = opt(0.0, "weight of L_MS, mode seeking between the translations of two source images of "
                                    "one class (Mao et al. 2019): 1 / (|G(x) - G(x')| / |f(x) - f(x')|), so that g "
                                    "draws unlike digits for unlike f(x); not in the paper; 0: off")
    upsample: str = opt("transpose", "how g doubles its side: transpose, the paper's 4x4 stride-2 transposed "
                                     "convolutions, which draw each of the four pixel parities with a quarter of "
                                     "their kernel, or resize, a nearest-neighbour resize and one 3x3 convolution "
                                     "for every pixel (Odena et al. 2016); not in the paper (embedded digits, seed 0, "
                                     "with --tid l1: diversity 0.79 to 0.82, stray ink 1.3 to 2.1%%; "
                                     "docs/methods/dtn.md)",
                        networks.UPSAMPLE)
    filters: int = opt(64, "filters of g's last hidden block and of D's first layer")
    features: int = opt(128, "size of f's representation (its last layer's filters)")
    encoder: str | None = opt(None, "f saved by an earlier run's stage 1 (RUN/encoder/f.keras), reused "
                                    "instead of training f (default: stage 1 trains it)")
    encoder_steps: int = opt(1500, "stage 1: steps training f as a classifier on the labelled source")
    encoder_lr: float = opt(1e-3, "stage 1: Adam learning rate")
    semantic_steps: int = opt(1000, "stage 1b (with --semantic): steps training h on the target images labelled "
                                    "as --h-labels says")
    h_labels: str = opt("centroid", "stage 1b: what h learns the target's classes from: centroid, every target image "
                                    "labelled by its nearest class centroid of f's features, the centroids first "
                                    "weighted by f's classifier's readings, then refined k-means-like (SHOT, Liang "
                                    "et al. 2020; not in the paper; on the embedded digits 91-93%% of the labels "
                                    "right on three seeds, every class 84%% or more, and h then reads 95-96%% of "
                                    "held-out MNIST), or confident, the target images f's classifier reads with "
                                    f"probability {CONFIDENT} or more, labelled so (85-92%% right, seed 2's sevens "
                                    "50%%; h 85-93%%; docs/methods/dtn.md)", H_LABELS)
    semantic_eps: float = opt(0.6, "stage 1b: h learns from adversarial examples, each image moved by up to this "
                                   "much per pixel (images in [-1, 1]) to be misread (FGSM with random start), "
                                   "so that g cannot fool h with faint marks as it fools a plain h (docs/methods/dtn.md); "
                                   "0: from the images themselves")
    encoder_eps: float | None = opt(None, "stage 1: f learns from adversarial examples, each image moved by up to "
                                          "this much per pixel (images in [-1, 1]) to be misread (FGSM with random "
                                          "start), so that g cannot keep f(x) with small marks beside the digit; 0: "
                                          "from the images themselves; default: the preset's (digits-small 0.3, "
                                          "digits and faces 0: the paper's f; docs/methods/dtn.md)")
    encoder_augment: bool = opt(True, "stage 1: distort f's training images (rotation, scale, shift, stroke "
                                      "width) so that f reads the target domain's digits too")
    judge: str | None = opt(None, "a target-domain classifier (the target_classifier.keras that scripts/evaluate.py "
                                  "saves) whose accuracy on G(held-out source) each validation logs as val_judge, "
                                  "per class too: the paper's measure during training, for watching only")
    classes: tuple[str, ...] = opt((), "the source's classes (set from the data)")

    @property
    def settings(self) -> dict:
        """The preset's values with the explicitly given ones over them."""
        if self.preset not in PRESETS:
            raise UsageError(f"--preset {self.preset!r}: expected one of {', '.join(PRESETS)}")
        given = {k: getattr(self, k) for k in FLAGGED if getattr(self, k) is not None}
        return {**PRESETS[self.preset], **given}

    def resolved(self) -> "DTNConfig":
        """This config with the preset's values written in where no flag gave one, so that a
        run's config.json keeps them: a resume then refuses a preset whose values changed. A
        preset's L_SEM and class-conditional D are off for an unlabelled source (an explicit
        --semantic or --conditional-d is refused)."""
        settings = self.settings
        if not self.classes:
            settings.update({k: off for k, off in NEED_CLASSES.items() if getattr(self, k) is None})
        return dataclasses.replace(self, **{k: settings[k] for k in FLAGGED})


@register("dtn", evaluation="classified", resumable=("judge",), config=DTNConfig, data_kind="transfer",
          overrides={"data": {"load_size": 32, "crop_size": 32, "batch_size": 64, "flip": False},
                     "train": {"lr": 2e-4, "epochs": 40, "decay_epochs": 0, "sample_every": 250,
                               "checkpoint_every": 250, "validate_every": 250}},
          demo={"train": {"epochs": 20}},
          demo_result="30 min 43 s alone on an AVX-512 machine with --evaluate (stage 1 4 min 22 s, stage 1b "
                      "2 min 18 s, stage 2's 1,240 steps 21 min); three MNIST judges (a CNN, 3 nearest neighbours, a "
                      "random forest) read 96.6-99.0 % of the translated held-out digits as their class, every "
                      "class 88 % or more (3 seeds; untranslated 32-73 %), no mark beside a digit; scripts/demo.sh's "
                      "shorter run: 98.0, 96.6 and 98.0 % (docs/methods/dtn.md)")
class DTN(TranslationModel):
    """DTN (Taigman, Polyak, Wolf, *Unsupervised Cross-Domain Image Generation*, ICLR 2017).

    G = g o f: f, trained first as a classifier on the labelled source domain (stage 1) and
    then frozen, maps an image to a (1, 1, ``features``) vector; g draws a target-domain
    image from it. D is ternary (G(x) of a source x, G(x) of a target x, a real target x).
    L_D = -log D_1(G(x_s)) - log D_2(G(x_t)) - log D_3(x_t);
    L_G = L_GANG + alpha L_CONST + beta L_TID + gamma L_TV with L_GANG = -log D_3(G(x_s))
    - log D_3(G(x_t)), L_CONST = MSE(f(x_s), f(G(x_s))), L_TID = MSE(x_t, G(x_t)), L_TV the
    anisotropic total variation of G(x_s); only g and D are updated, g ``g_steps`` times per
    update of D. With ``pool_size``, D's G(x) come from history pools, with ``d_augment``
    D sees every image through DiffAugment, with ``instance_noise`` with Gaussian noise, and
    with ``semantic`` L_G adds ``semantic`` L_SEM, the cross-entropy of h(G(x_s)) against
    x_s's class, h a classifier of the target domain trained (stage 1b, then frozen) on the
    target images labelled by their nearest class centroid of f's features (``h_labels``;
    SHOT's pseudo-labels, Liang et al. 2020), and from adversarial examples of them
    (``semantic_eps``) so that g cannot fool it with faint marks: CyCADA's semantic
    consistency (Hoffman et al., ICML 2018) read by a robust target-domain classifier trained
    by pseudo-labelling, so that a class is drawn as the target draws it;
    with ``conditional_d`` D's logits are its shared three plus three of the image's class
    (x_s's, and for a target image h's reading), so that D learns what a real drawing of each
    class looks like; with ``encoder_eps`` stage 1 trains f on adversarial examples; with
    ``mode_seeking`` L_G adds L_MS (Mao et al., CVPR 2019) between translations of one class;
    with ``read_stroke`` L_CONST and L_SEM read G(x_s) with the ink apart from its largest
    stroke erased (``losses.largest_stroke_alone``); with ``one_stroke`` g ends in a layer that
    erases the marks, pieces with under ``mark_below`` of that stroke's ink (``networks.LargestStroke``),
    so that every loss, D and the export see none;
    with ``stroke`` L_G adds L_STROKE, the share of G(x)'s ink the layer erases
    (``losses.erased_share``; with ``one_stroke`` of g's drawing before that layer); with ``d_negatives`` L_D
    adds -log D_2 of real target images given stray marks or a cut stroke
    (``augment.stray_marks``); with ``tid`` l1 L_TID is the mean absolute difference. None of
    these is in the paper;
    ``d_augment``, ``semantic``, ``conditional_d``, ``encoder_eps``, ``align``, ``one_stroke`` and
    ``stroke`` are on in the default preset, digits-small.
    """

    loss_names = (*G_LOSSES, "D")
    generator_roles = ("g",)
    discriminator_roles = ("D",)
    validation_key = "val_const"
    validation_mode = "min"
    validation_shown = ("val_f_accuracy", "val_h_accuracy", "val_judge")
    panel_titles = ("source", "G(source)", "target", "G(target)")

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        m, size = config.model, config.data.crop_size
        self.settings = s = m.settings
        side = 2 ** (s["decoder_blocks"] + 1)
        if size != side:
            raise UsageError(f"--preset {m.preset}: g draws {side}x{side} images; train at that size "
                             f"(--image-size {side} --load-size {side}), not {size}")
        if s["one_stroke"] and s["channels"] != 1:
            raise UsageError(f"--one-stroke keeps the largest stroke of grey drawings; these images have "
                             f"{s['channels']} channels")
        if m.d_negatives and s["channels"] != 1:
            raise UsageError(f"--d-negatives draws pen marks on grey drawings; these images have "
                             f"{s['channels']} channels")
        if not 0.0 <= m.d_cutout < 1.0:
            raise UsageError(f"--d-cutout {m.d_cutout}: a share of the image's side, at least 0 and below 1")
        self.f = networks.dtn_encoder(size=size, in_channels=s["channels"], widths=(64, 128, 256, m.features))
        self.f.trainable = False
        # f with its stage-1 head; none when the source is unlabelled (f then comes from --encoder)
        self.classifier = classifier.with_head(self.f, len(m.classes), name="f_classifier") if m.classes else None
        # h, stage 1b's classifier of the target domain, read by L_SEM; none when off
        self.h = None
        if s["semantic"]:
            if self.classifier is None:
                raise DataError("--semantic: L_SEM reads G(x) as the source x's class, and this source is "
                                "unlabelled: put its images in one folder per class, or use --semantic 0")
            check_move("--semantic-eps", m.semantic_eps, 0.6)
            h_encoder = networks.dtn_encoder(size=size, in_channels=s["channels"], widths=(64, 128, 256, m.features),
                                             name="h_encoder")
            self.h = classifier.with_head(h_encoder, len(m.classes), name="h")
            self.h.trainable = False
        decoder = lambda name: networks.dtn_decoder(  # noqa: E731
            features=m.features, out_channels=s["channels"], filters=m.filters, n_blocks=s["decoder_blocks"],
            upsample=m.upsample, one_stroke=s["one_stroke"], mark_below=m.mark_below, name=name)
        self.g = decoder("g")
        # --one-stroke: g up to its tanh, what its last layer erases from (L_STROKE reads it); none when off
        self.g_raw = (keras.Model(self.g.input, self.g.get_layer("tanh").output, name="g_raw") if s["one_stroke"]
                      else None)
        # --conditional-d: who names a target image's class (h, else f's classifier); none when off
        self.namer = None
        if s["conditional_d"]:
            if self.classifier is None:
                raise DataError("--conditional-d: D reads G(x) as the source x's class, and this source is "
                                "unlabelled: put its images in one folder per class, or use --no-conditional-d")
            if m.pool_size:
                raise UsageError("--conditional-d keeps each image's class beside it; --pool-size's history "
                                 "pools do not: use one of them")
            self.namer = self.h if self.h is not None else self.classifier
        heads = 1 + len(m.classes) if self.namer is not None else 1
        self.D = networks.dtn_discriminator(size=size, in_channels=s["channels"], filters=m.filters,
                                            n_layers=s["disc_layers"], act=s["disc_act"], classes=3 * heads)
        image = keras.Input((size, size, s["channels"]), name="image")
        self.G = keras.Model(image, self.g(self.f(image)), name="G")
        # --align: f(x) of a source image moved to the target's class statistics (set before stage 2)
        self.align = None
        if s["align"]:
            if self.classifier is None:
                raise DataError("--align: f(x) is moved by its class, and this source is unlabelled: put its "
                                "images in one folder per class, or use --no-align")
            self.align = layers.ClassAlignment(len(m.classes), m.features, ALIGN_SHARE, m.align_covariance,
                                               name="align")
        # what translates a source image (G itself without --align); a target image is drawn by G
        self.G_source = self.G
        if self.align is not None:
            self.source_encoder = keras.Model(image, self.source_features(image), name="f_aligned")
            self.G_source = keras.Model(image, self.g(self.source_encoder(image)), name="G_source")
        # Averaged weights (Yazici et al., ICLR 2019), meant to damp the oscillation between the
        # modes g draws a class in; on the embedded digits the average blended two modes of a
        # class instead (docs/methods/dtn.md), so it is off by default. When on, it is validated and exported.
        self.g_average = None
        self.G_out = self.G_source
        if m.g_average:
            if not 0.0 < m.g_average < 1.0:
                raise UsageError(f"--g-average {m.g_average}: a decay between 0 and 1 (e.g. 0.999), or 0 for off")
            if tf.distribute.get_strategy().num_replicas_in_sync > 1:
                raise UsageError("--g-average trains on one device only (--strategy default)")
            self.g_average = decoder("g_average")
            self.g_average.set_weights(self.g.get_weights())
            self.g_average.trainable = False
            self.G_out = keras.Model(image, self.g_average(self.source_features(image)), name="G_average")
        self.pools = None  # none when off, so that checkpoints keep the paper's variables only
        if m.pool_size:
            shape = (size, size, s["channels"])
            self.pools = [ImagePool(m.pool_size, shape, seed=self.seed * 2 + k, name=f"pool_{kind}")
                          for k, kind in enumerate(("source", "target"))]
        self.nets = {"f": self.f, "g": self.g, "D": self.D, "G": self.G}
        self.judge = None  # --judge, loaded at the first validation
        check_move("--encoder-eps", s["encoder_eps"], 0.3)
        if m.g_steps < 1:
            raise UsageError(f"--g-steps must be at least 1, not {m.g_steps}")
        self.generator_every = 1 / m.g_steps

    # --- stage 1: f ---------------------------------------------------------------------

    def before_fit(self, data, run_dir: Path) -> None:
        """Stage 1: f from ``--encoder``, or from this run's finished stage 1, or trained now as
        a classifier on the labelled source (resumable; saved as RUN/encoder/f.keras); then,
        with ``--semantic``, stage 1b: h (``train_h``)."""
        if int(self.step.numpy()):
            return  # stage 2 has begun: f (and h) are in its checkpoint
        m = self.run_config.model
        folder = Path(run_dir) / "encoder"
        saved = Path(m.encoder) if m.encoder else folder / "f.keras"
        if not saved.is_file():
            if m.encoder:
                raise FileNotFoundError(f"--encoder {saved}: no such file")
            if data.source.labels is None:
                raise DataError(f"{data.source.images.describe}: the source images are unlabelled (no class "
                                "folders), and f is trained on their classes: put them in one folder per class, "
                                "or reuse a trained f with --encoder PATH")
            self.f.trainable = True
            batch = self.run_config.data.batch_size
            classifier.train(self.classifier, lambda first, count: data.labelled(
                "source", batch_size=batch, seed=self.seed, first_step=first, steps=count, augment=m.encoder_augment),
                steps=m.encoder_steps, lr=m.encoder_lr, folder=folder, describe="stage 1: f",
                adversarial=self.settings["encoder_eps"], seed=self.seed)
            self.f.trainable = False
            x, labels, _ = data.held_out()
            score = classifier.accuracy(self.classifier, x, labels)
            print(f"stage 1: f classifies {score:.1%} of {len(x)} held-out source images", file=sys.stderr)
            self.classifier.save(folder / "f.tmp.keras")
            (folder / "f.tmp.keras").replace(saved)
        self.load_encoder(saved)
        if self.h is not None:
            self.train_h(data, folder)
        if self.align is not None:
            self.fit_alignment(data)

    def train_h(self, data, folder: Path) -> None:
        """Stage 1b: h, a classifier of the target domain, trained on the target's training images
        labelled without target labels (``h_labels``), distorted as f's were (``--encoder-augment``)
        and learnt from as adversarial examples (``--semantic-eps``); resumable, saved as
        RUN/encoder/h.keras, then frozen."""
        m, saved = self.run_config.model, folder / "h.keras"
        if not saved.is_file():
            images, labels, which = self.target_labels(data)
            self.h.trainable = True
            batch = self.run_config.data.batch_size
            classifier.train(self.h, lambda first, count: transfer.array_batches(
                images, labels, batch_size=batch, seed=self.seed, first_step=first, steps=count,
                augment=m.encoder_augment), steps=m.semantic_steps, lr=m.encoder_lr,
                folder=folder / "h", describe="stage 1b: h", adversarial=m.semantic_eps, seed=self.seed)
            self.h.trainable = False
            print(f"stage 1b: h learnt the target's classes from {which}; per class "
                  f"{np.bincount(labels, minlength=len(m.classes)).tolist()}", file=sys.stderr)
            self.h.save(folder / "h.tmp.keras")
            (folder / "h.tmp.keras").replace(saved)
        self.h.set_weights(keras.models.load_model(saved, compile=False).get_weights())

    def target_labels(self, data) -> tuple[np.ndarray, np.ndarray, str]:
        """The target images h learns from, their classes, and a description: every image by its
        nearest centroid of f's features (``classifier.centroid_labels``), or those f's classifier
        reads with probability ``CONFIDENT`` or more, labelled so."""
        images = data.images(data.target)
        features, probabilities = classifier.read(self.f, self.classifier, images)
        if self.run_config.model.h_labels == "centroid":
            labels = classifier.centroid_labels(features, probabilities)
            return images, labels, (f"the {len(images)} target images, each labelled by its nearest class centroid "
                                    "of f's features")
        confident = probabilities.max(axis=1) >= CONFIDENT
        if not confident.any():
            raise DataError(f"{data.target.images.describe}: f reads none of the {len(images)} target images "
                            f"with probability {CONFIDENT} or more, so h has nothing to learn from: use "
                            "--semantic 0 or --h-labels centroid")
        return (images[confident], probabilities.argmax(axis=1)[confident],
                f"the {int(confident.sum())} of {len(images)} target images f reads with probability {CONFIDENT} "
                "or more")

    def fit_alignment(self, data) -> None:
        """--align's statistics: f's features of the source's training images by their classes and
        of the target's by the class h reads (f's classifier without L_SEM), from the images it reads
        most surely (``more_confident``); checkpointed with g."""
        source, target = data.images(data.source), data.images(data.target)
        read = classifier.probabilities(self.h if self.h is not None else self.classifier, target)
        labels, sure = np.argmax(read, axis=1), more_confident(read)
        ratio = self.align.fit(classifier.outputs(self.f, source), data.source.labels,
                               classifier.outputs(self.f, target[sure]), labels[sure])
        print(f"--align: the target's within-class spread of f(x) over the source's, per class: "
              f"{', '.join(f'{r:.2f}' for r in ratio)}" + "".join(
                  f"; {name}: fewer than two different features in a domain (the target as h reads it), left unmoved"
                  for name, r in zip(self.run_config.model.classes, ratio) if np.isnan(r)), file=sys.stderr)

    def load_encoder(self, path: Path) -> None:
        """f and its classifier head from a stage-1 file; a file that does not fit fails, saying why."""
        try:
            loaded = keras.models.load_model(path, compile=False)
        except Exception as e:  # keras raises many types for a file that is not a saved model
            raise DataError(f"{path}: not a saved Keras model ({str(e).splitlines()[0]})") from None
        want_in, want_out = self.f.input_shape[1:], self.f.output_shape[1:]
        if loaded.input_shape[1:] != want_in:
            raise DataError(f"{path}: the encoder takes images of {loaded.input_shape[1:]}; this run's are {want_in}")
        names = [layer.name for layer in loaded.layers]
        if "features" not in names or "logits" not in names:
            raise DataError(f"{path}: not an f saved by DTN's stage 1 (no features and logits layers)")
        out, logits = loaded.get_layer("features").output.shape[1:], loaded.get_layer("logits").output.shape[-1]
        if out != want_out:
            raise DataError(f"{path}: the encoder's output {out} does not fit g, which takes {want_out} "
                            f"(--features {want_out[-1]})")
        if self.classifier is None:  # an unlabelled source: f alone
            self.f.set_weights(keras.Model(loaded.input, loaded.get_layer("features").output).get_weights())
            return
        if logits != len(self.run_config.model.classes):
            raise DataError(f"{path}: the encoder classifies {logits} classes; this source has "
                            f"{len(self.run_config.model.classes)}")
        self.classifier.set_weights(loaded.get_weights())

    # --- stage 2: g and D ---------------------------------------------------------------

    def train_step(self, data):
        x_s, y_s, x_t = self.static_batch(data)
        s = self.settings
        y_t = tf.argmax(self.namer(x_t), axis=-1, output_type=y_s.dtype) if self.namer is not None else None
        fake_s, fake_t = self.G(x_s, training=True), self.G(x_t, training=True)
        if self.pools:
            fake_s, fake_t = (pool.query(fake, self.step) for pool, fake in zip(self.pools, (fake_s, fake_t)))
        with tf.GradientTape() as tape:
            d_loss = losses.dtn_discriminator_loss(
                self.ternary(fake_s, y_s, 0), self.ternary(fake_t, y_t, 1), self.ternary(x_t, y_t, 2))
            if self.run_config.model.d_negatives:
                d_loss += self.run_config.model.d_negatives * self.negatives_loss(x_t, y_t)
            d_loss = self.reduce(d_loss, x_s)
        finite_d = self.apply_gradients(self.d_optimizer, tape, d_loss, self.discriminator_roles)
        f_s, finite_g = self.source_features(x_s), tf.constant(True)
        for k in range(self.run_config.model.g_steps):
            with tf.GradientTape() as tape:
                (fake_s, stray_s), (fake_t, stray_t) = self.draw(f_s), self.draw(self.f(x_t))
                gang = losses.dtn_generator_loss(self.ternary(fake_s, y_s, 3 + 2 * k),
                                                 self.ternary(fake_t, y_t, 4 + 2 * k))
                read = self.as_read(fake_s)
                const = losses.mse(f_s, self.f(read))
                tid = TID_DISTANCES[s["tid"]](x_t, fake_t)
                tv = losses.anisotropic_total_variation(fake_s)
                sem = (losses.domain_classification(self.h(read), tf.one_hot(y_s, self.h.output_shape[-1]), False)
                       if self.h is not None else tf.zeros_like(tv))
                ms = (losses.mode_seeking(fake_s, f_s, y_s) if self.run_config.model.mode_seeking
                      else tf.zeros_like(tv))
                stroke = stray_s + stray_t if s["stroke"] else tf.zeros_like(tv)
                total = self.reduce(gang + s["alpha"] * const + s["beta"] * tid + s["gamma"] * tv
                                    + s["semantic"] * sem + self.run_config.model.mode_seeking * ms
                                    + s["stroke"] * self.stroke_ramp() * stroke, x_s)
            finite_g = tf.logical_and(finite_g, self.apply_gradients(self.g_optimizer, tape, total,
                                                                      self.generator_roles))
            if self.g_average is not None:
                self.update_average(self.step * self.run_config.model.g_steps + k)
        values = (total, *(self.reduce(v, x_s) for v in (gang, const, tid, tv, sem, ms, stroke)), d_loss)
        return self.record(dict(zip(self.loss_names, values)), tf.logical_and(finite_d, finite_g))

    def negatives_loss(self, x_t, y_t):
        """--d-negatives' term of L_D per sample: -log D_2 of real target images with stray marks
        or a broken stroke (``augment.stray_marks``)."""
        marked = stray_marks(x_t, seeding.derive(self.seed, seeding.MARKS, self.step))
        return losses.dtn_negative_loss(self.ternary(marked, y_t, 3 + 2 * self.run_config.model.g_steps))

    def draw(self, features):
        """g's drawings of ``features`` in training and L_STROKE of each (0 when off), the share
        of its ink in marks (pieces under --mark-below of its largest stroke's ink): with
        --one-stroke, of g's drawing before its last layer erased them, found in one search with
        what the layer keeps."""
        below = self.run_config.model.mark_below
        if self.g_raw is not None:
            return losses.one_stroke(self.g_raw(features, training=True), below=below)
        made = self.g(features, training=True)
        return made, (losses.erased_share(made, below=below) if self.settings["stroke"]
                      else tf.zeros(tf.shape(made)[:1]))

    def stroke_ramp(self):
        """L_STROKE's share of its weight at this step: 0 for --stroke-after steps, then rising
        linearly to 1 over as many more (1 from the start with --stroke-after 0)."""
        after = self.run_config.model.stroke_after
        if after <= 0:
            return tf.constant(1.0)
        return tf.clip_by_value(tf.cast(self.step, tf.float32) / after - 1.0, 0.0, 1.0)

    def as_read(self, made):
        """G(x) of source images as L_CONST and L_SEM read them: with --read-stroke its largest stroke
        alone (``losses.largest_stroke_alone``)."""
        return losses.largest_stroke_alone(made) if self.run_config.model.read_stroke else made

    def source_features(self, x):
        """What g draws a source image from: f(x), with --align moved to the target's statistics
        of the class f's classifier reads."""
        features = self.f(x)
        if self.align is None:
            return features
        return self.align(features, keras.ops.softmax(classifier.head(self.classifier, features)))

    def ternary(self, images, labels, k: int):
        """D's three logits for ``images`` as it sees them (``seen_by_d``, draw ``k``); with
        ``--conditional-d``, the shared logits plus those of each image's class in ``labels``."""
        logits = self.D(self.seen_by_d(images, k), training=True)
        if self.namer is None:
            return logits
        heads = tf.reshape(logits, [-1, 1 + len(self.run_config.model.classes), 3])
        return heads[:, 0] + tf.gather(heads[:, 1:], labels, batch_dims=1)

    def seen_by_d(self, images, k: int):
        """``images`` as D sees them: with ``--d-augment`` shifted (and cut out by ``--d-cutout``), with
        ``--instance-noise`` plus Gaussian noise, drawn from (seed, step, ``k``), so that a
        resumed run draws the same."""
        if self.settings["d_augment"]:
            images = diff_augment(images, seeding.derive(self.seed, seeding.AUGMENT, self.step, k),
                                  cutout=self.run_config.model.d_cutout)
        sigma = self.run_config.model.instance_noise
        if not sigma:
            return images
        seed = seeding.derive(self.seed, seeding.NOISE, self.step, k)
        shape = tf.shape(images)
        noise = replicas.draw(lambda n: tf.random.stateless_normal(tf.concat([[n], shape[1:]], 0), seed,
                                                                   dtype=images.dtype), shape[0])
        return images + sigma * noise

    def update_average(self, updates):
        """g_average <- d g_average + (1 - d) g after g's update number ``updates`` (from 0),
        with d = min(decay, (1 + updates) / (10 + updates)) as tf.train.ExponentialMovingAverage
        ramps it, so that the average does not hold on to g's random initial weights."""
        n = tf.cast(updates, tf.float32)
        decay = tf.minimum(self.run_config.model.g_average, (1.0 + n) / (10.0 + n))
        for average, weight in zip(self.g_average.weights, self.g.weights):
            average.assign(decay * average + (1.0 - decay) * weight)

    # --- export, panels, validation -----------------------------------------------------

    def generators(self) -> dict:
        return {"translate": (self.G_out, self.settings["channels"])}

    def input_size(self) -> int | None:
        return self.run_config.data.crop_size

    def readers(self) -> dict:
        flat = lambda v: tf.reshape(v, [tf.shape(v)[0], -1])  # noqa: E731
        readers = {"encode": (self.f, "features", flat)}
        if self.align is not None:
            readers["encode_aligned"] = (self.source_encoder, "features", flat)
        if self.classifier is not None:
            readers["classify"] = (self.classifier, "probabilities", tf.nn.softmax)
        return readers

    def sample_rows(self, batch):
        source, target = batch
        n = min(len(source), len(target))
        made_s, made_t = self.G_out(source[:n]).numpy(), self.G(target[:n]).numpy()
        return [[source[i], made_s[i], target[i], made_t[i]] for i in range(n)]

    def validate(self, held_out) -> dict:
        """On held-out images: f-constancy MSE(f(x), f(G(x))) of source images, G(x) read as
        L_CONST reads it (lower is better), how often f's classifier reads G(x) as x's class, and
        MSE(x, G(x)) of targets; with ``--judge``, how often the target-domain classifier does
        (overall and per class)."""
        x_s, labels, x_t = held_out
        made = self.G_out(x_s)
        scores = {self.validation_key: float(tf.reduce_mean(losses.mse(self.source_features(x_s),
                                                                       self.f(self.as_read(made))))),
                  "val_tid": float(tf.reduce_mean(losses.mse(x_t, self.G(x_t))))}
        if labels is not None and self.classifier is not None:
            scores["val_f_accuracy"] = classifier.accuracy(self.classifier, made.numpy(), labels)
        if labels is not None and self.h is not None:
            scores["val_h_accuracy"] = classifier.accuracy(self.h, made.numpy(), labels)
        if labels is not None and self.run_config.model.judge:
            if self.judge is None:
                self.judge = keras.models.load_model(self.run_config.model.judge, compile=False)
            read = classifier.predict(self.judge, made.numpy())
            scores["val_judge"] = float(np.mean(read == labels))
            scores.update({f"val_judge_{name}": float(np.mean(read[labels == k] == k))
                           for k, name in enumerate(self.run_config.model.classes) if np.any(labels == k)})
        return scores


def check_move(flag: str, eps: float, measured: float) -> None:
    """An adversarial training's move per pixel (``--semantic-eps``, ``--encoder-eps``), checked
    before any training: images are in [-1, 1], so at least 0 and below 1."""
    if not 0.0 <= eps < 1.0:
        raise UsageError(f"{flag} {eps}: a move per pixel of images in [-1, 1], at least 0 and below 1 "
                         f"({measured} measured on the embedded digits)")


def more_confident(probabilities: np.ndarray) -> np.ndarray:
    """Which images are among the more confident half of those read as their class: a reader's
    mistakes fall mostly in the less confident half (the seed-0 h reads 126 of the embedded
    target's 413 sevens as ones, a quarter of what it calls ones; 1 % of the surer half are not
    ones) and would pull a class's statistics toward another class's (docs/methods/dtn.md)."""
    read, confidence = np.argmax(probabilities, axis=1), np.max(probabilities, axis=1)
    keep = np.zeros(len(read), bool)
    for k in np.unique(read):
        members = read == k
        keep |= members & (confidence >= np.median(confidence[members]))
    return keep


def diversity(images: np.ndarray, labels: np.ndarray) -> float:
    """Mean, over classes, of the mean pairwise L2 distance between the images of a class."""
    per_class = []
    for k in np.unique(labels):
        flat = images[labels == k].reshape(int(np.sum(labels == k)), -1).astype(np.float64)
        if len(flat) < 2:
            continue
        squares = np.sum(flat**2, axis=1)
        distances = np.sqrt(np.maximum(squares[:, None] + squares[None, :] - 2 * flat @ flat.T, 0.0))
        per_class.append(distances[np.triu_indices(len(flat), 1)].mean())
    return float(np.mean(per_class)) if per_class else float("nan")
