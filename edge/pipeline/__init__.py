"""Edge capture pipeline: frames -> BlazeFace detection -> 112x112 alignment -> embedding.

Public entry point: :class:`splitface.edge.pipeline.pipeline.FacePipeline`.
"""
