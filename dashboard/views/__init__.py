"""The lessons, one registry line each. Adding a lesson: a pure module in ``dashboard/lessons``,
one lesson module here (its view, its snapshot form, its options, its "what you see" text),
and one ``register`` line below (see :mod:`dashboard.views.registry`)."""

from dashboard.views import (
    attention,
    bpe,
    calculator,
    ffn,
    kvcache,
    loss,
    mask,
    mixed,
    moe,
    optimizers,
    positions,
    precision,
    qkv,
    recipes,
    residual,
    sampling,
    tiles,
    trainrun,
    translator,
)
from dashboard.views.registry import LESSONS, Lesson, LessonView, register

register("bpe", "BPE tokenizer", "Tokens", bpe.BpeLesson, bpe.snapshot, about=bpe.ABOUT)
register(
    "attention",
    "Attention",
    "Attention",
    attention.AttentionLesson,
    attention.snapshot,
    about=attention.ABOUT,
    options=attention.AttentionOptions,
)
register(
    "mask",
    "Causal mask",
    "Attention",
    mask.MaskLesson,
    mask.snapshot,
    about=mask.ABOUT,
    options=mask.MaskOptions,
)
register(
    "qkv",
    "Embeddings, Q, K and V",
    "Inside a block",
    qkv.QkvLesson,
    qkv.snapshot,
    about=qkv.ABOUT,
)
register(
    "residual",
    "The residual stream and norms",
    "Inside a block",
    residual.ResidualLesson,
    residual.snapshot,
    about=residual.ABOUT,
    options=residual.ResidualOptions,
)
register(
    "ffn",
    "The feed-forward network",
    "Inside a block",
    ffn.FfnLesson,
    ffn.snapshot,
    about=ffn.ABOUT,
)
register(
    "positions",
    "Positions",
    "Positions",
    positions.PositionsLesson,
    positions.snapshot,
    about=positions.ABOUT,
    options=positions.PositionsOptions,
)
register(
    "kv",
    "K/V heads and the cache",
    "Scale",
    kvcache.KvLesson,
    kvcache.snapshot,
    about=kvcache.ABOUT,
    options=kvcache.KvOptions,
)
register(
    "tiles",
    "FlashAttention's tiles",
    "Scale",
    tiles.TilesLesson,
    tiles.snapshot,
    about=tiles.ABOUT,
    options=tiles.TilesOptions,
)
register(
    "moe",
    "Mixture of experts",
    "Scale",
    moe.MoeLesson,
    moe.snapshot,
    about=moe.ABOUT,
)
register(
    "calculator",
    "A calculator for real models",
    "Scale",
    calculator.CalculatorLesson,
    calculator.snapshot,
    about=calculator.ABOUT,
    options=calculator.CalculatorOptions,
)
for name, title, view, snap in (
    ("encoder", "Encoder", translator.EncoderLesson, translator.snapshot_encoder),
    ("decoder", "Decoder", translator.DecoderLesson, translator.snapshot_decoder),
    ("cross", "Cross-attention", translator.CrossLesson, translator.snapshot_cross),
):
    register(
        name,
        title,
        "Encoder–decoder",
        view,
        snap,
        about=translator.ABOUT[name],
        options=translator.TranslatorOptions,
    )

register(
    "sampling",
    "Temperature & sampling",
    "Generation",
    sampling.SamplingLesson,
    sampling.snapshot,
    about=sampling.ABOUT,
    options=sampling.SamplingOptions,
    aliases=("temperature",),
)
register(
    "loss",
    "Next-token loss",
    "Training",
    loss.LossLesson,
    loss.snapshot,
    about=loss.ABOUT,
)
register(
    "run",
    "The training run",
    "Training",
    trainrun.TrainRunLesson,
    trainrun.snapshot,
    about=trainrun.ABOUT,
)
register(
    "mixed",
    "Mixed precision",
    "Training",
    mixed.MixedLesson,
    mixed.snapshot,
    about=mixed.ABOUT,
    options=mixed.MixedOptions,
)
register(
    "optimizers",
    "Adam vs AdamW",
    "Training",
    optimizers.OptimLesson,
    optimizers.snapshot,
    about=optimizers.ABOUT,
    options=optimizers.OptimOptions,
)
register(
    "recipes",
    "GPT and LLaMA, measured",
    "Training",
    recipes.RecipesLesson,
    recipes.snapshot,
    about=recipes.ABOUT,
    options=recipes.RecipesOptions,
)
register(
    "precision",
    "FP16 vs BF16",
    "Numbers",
    precision.PrecisionLesson,
    precision.snapshot,
    about=precision.ABOUT,
    options=precision.PrecisionOptions,
)

__all__ = ["LESSONS", "Lesson", "LessonView", "register"]
