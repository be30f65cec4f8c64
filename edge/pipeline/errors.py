"""Named failures of the edge pipeline, so callers can skip one bad frame and keep going."""

from __future__ import annotations


class PipelineError(RuntimeError):
    """Base class: this frame (or this model) could not be processed."""

    status = "error"


class CorruptInputError(PipelineError):
    """The frame or file could not be decoded into an 8-bit BGR image."""

    status = "corrupt_input"


class ImageTooLargeError(PipelineError):
    """The image is beyond what can be decoded within the memory bound, even downscaled."""

    status = "image_too_large"


class BlankFrameError(PipelineError):
    """The frame is (almost) uniform, e.g. a covered lens or a camera that has not warmed up."""

    status = "blank_frame"


class NoFaceError(PipelineError):
    """The detector found no face above its score threshold."""

    status = "no_face"


class ManyFacesError(PipelineError):
    """More than one face and the policy asks for exactly one (e.g. at an access terminal)."""

    status = "many_faces"


class ModelMissingError(PipelineError):
    """A model file is absent or fails its checksum; run ``make models``."""

    status = "model_missing"


class RuntimeUnavailableError(PipelineError):
    """The inference runtime (mediapipe, ai-edge-litert, dlib) is not installed on this device."""

    status = "runtime_unavailable"
