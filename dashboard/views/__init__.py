"""The dashboard's lessons, in navigation order. Adding a lesson: write its view class (a
:class:`~dashboard.views.registry.LessonView`) and add one ``register`` line here."""

from dashboard.views.attention import AttentionLesson
from dashboard.views.bpe import BpeLesson
from dashboard.views.mask import MaskLesson
from dashboard.views.precision import PrecisionLesson
from dashboard.views.registry import LESSONS, Lesson, LessonView, register
from dashboard.views.sampling import SamplingLesson

register("attention", "Attention", AttentionLesson)
register("mask", "Causal mask", MaskLesson)
register("bpe", "BPE tokenizer", BpeLesson)
register("sampling", "Temperature & sampling", SamplingLesson)
register("precision", "FP16 vs BF16", PrecisionLesson)

__all__ = ["LESSONS", "Lesson", "LessonView", "register"]
