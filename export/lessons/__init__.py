"""One module per lesson of the snapshot; each has ``build(ctx) -> Bokeh layout``."""
