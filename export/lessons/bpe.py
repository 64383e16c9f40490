"""The BPE lesson, offline: a merge-step slider shows the text's segmentation after the first
k merges. Only what the text needs is embedded: each regex chunk's bytes and the tokenizer's
own encode trace (``Tokenizer.encode_trace``), replayed in ``js/bpe.js``.

Merges are ordered as the tokenizer learned them (by rank, the chunk's order on ties), so the
slider shows the vocabulary growing: common pairs join first, whole words last. Within a
chunk the trace's order is kept (the running maximum of its ranks is the key), so every
position of the slider is a state the encoder really passes through.
"""

from __future__ import annotations

from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Slider

from export.common import Context, callback, div


def merge_schedule(ctx: Context) -> tuple[list[list[int]], list[dict]]:
    """(initial byte ids per chunk, steps in slider order) for the tokens the snapshot shows.

    Each step: ``chunk``, ``new`` (the id made), ``left``, ``right``, ``whole`` (tiktoken's
    whole-chunk shortcut) and ``parts`` (the chunk's ids after it)."""
    trace = ctx.tokenizer.encode_trace(ctx.text)
    initial, steps, seen = [], [], 0
    for c, chunk in enumerate(trace.chunks):
        if seen >= ctx.n_tokens:  # the rest was truncated away
            break
        seen += len(chunk.ids)
        initial.append(list(chunk.initial))
        key = -1
        for j, st in enumerate(chunk.steps):
            key = max(key, st.new)
            steps.append(
                dict(
                    key=(key, c, j),
                    chunk=c,
                    new=st.new,
                    left=st.left,
                    right=st.right,
                    whole=st.whole_chunk,
                    parts=list(st.parts),
                )
            )
    steps.sort(key=lambda s: s.pop("key"))
    return initial, steps


def build(ctx: Context):
    initial, steps = merge_schedule(ctx)
    n = len(steps)
    slider = Slider(
        title=f"Merges applied (of {n})",
        start=0,
        end=max(n, 1),
        step=1,
        value=n,
        disabled=n == 0,
        width=700 if ctx.style.classroom else 520,
        name="bpe-step",
        stylesheets=[ctx.stylesheet],
    )
    schedule = ColumnDataSource(
        data={
            k: [s[k] for s in steps] for k in ("chunk", "new", "left", "right", "whole", "parts")
        },
        name="bpe-steps",
    )
    segments = ColumnDataSource(data=dict(id=[], label=[], chunk=[]), name="bpe-segments")
    view = div(ctx, "", "bpe-view", name="bpe-view")
    info = div(ctx, "", "explain", name="bpe-info")
    args = dict(
        slider=slider,
        schedule=schedule,
        initial=initial,
        vocab=ctx.vocabulary(),
        segments=segments,
        view=view,
        info=info,
    )
    redraw = callback("bpe", "draw()", **args)
    slider.js_on_change("value", redraw)
    ctx.on_ready(redraw)
    explain = div(
        ctx,
        "Byte-level BPE starts from the text's UTF-8 bytes, split by a regex into chunks "
        "(words with their leading space, numbers, punctuation), and merges adjacent pairs in "
        "the order the tokenizer learned them: the lowest rank first. Slide to 0 to see the "
        "bytes; at the end you have the tokens the model reads.",
        "caption",
    )
    return column(slider, info, view, explain)
