"""Face detectors on real photos: one face per single-face fixture, two faces largest first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitfas.data.io import load_image
from vitfas.errors import BadConfigError, BadImageError
from vitfas.faces import DEFAULT_DETECTOR, Detector, Face, get_detector, list_detectors

SINGLE = [
    "live_exif6.jpg",
    "print_a4_exif6.jpg",
    "replay_tablet_exif6.jpg",
    "live_2.jpg",
    "print_id_photo.jpg",
    "live_large_1617x2160.jpg",
]


@pytest.fixture(scope="module")
def dlib_det() -> Detector:
    return get_detector("dlib")


@pytest.mark.parametrize("name", SINGLE)
def test_default_finds_exactly_one_face(face_fixtures: Path, name: str) -> None:
    rgb = load_image(face_fixtures / name)
    faces = get_detector().detect(rgb)
    assert len(faces) == 1, faces
    f = faces[0]
    h, w = rgb.shape[:2]
    # a face in these portraits is large: between 15% and 60% of the image width
    assert 0.15 * w < f.width < 0.6 * w
    assert 0 <= f.box[0] < f.box[2] <= w + 1 and 0 <= f.box[1] < f.box[3] <= h + 1


@pytest.mark.parametrize("backend", ["haar", "lbp"])
def test_other_backends_find_the_face(face_fixtures: Path, backend: str) -> None:
    rgb = load_image(face_fixtures / "live_2.jpg")
    ref = get_detector("dlib").detect(rgb)[0]
    faces = get_detector(backend).detect(rgb)
    assert faces, backend
    cx = [(f.box[0] + f.box[2]) / 2 for f in faces]
    cy = [(f.box[1] + f.box[3]) / 2 for f in faces]
    rcx, rcy = (ref.box[0] + ref.box[2]) / 2, (ref.box[1] + ref.box[3]) / 2
    # one of the detections is centred on the same face (within a third of its width)
    assert min(np.hypot(np.array(cx) - rcx, np.array(cy) - rcy)) < ref.width / 3


def test_two_faces_largest_first(face_fixtures: Path, dlib_det: Detector) -> None:
    rgb = load_image(face_fixtures / "two_faces_live_and_replay.png")
    faces = dlib_det.detect(rgb)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    w = rgb.shape[1]
    # the larger (live) face is on the right, the phone replay on the left
    assert (faces[0].box[0] + faces[0].box[2]) / 2 > w / 2
    assert (faces[1].box[0] + faces[1].box[2]) / 2 < w / 2


def test_downscaling_maps_boxes_back(face_fixtures: Path) -> None:
    rgb = load_image(face_fixtures / "live_large_1617x2160.jpg")
    small = get_detector("haar", max_side=640).detect(rgb)[0]
    big = get_detector("haar", max_side=1200).detect(rgb)[0]
    # same face in full-resolution coordinates, sizes agree within 15%
    assert abs(small.width - big.width) < 0.15 * big.width
    assert abs(small.box[0] - big.box[0]) < 0.15 * big.width


def test_no_face_is_empty_list(dlib_det: Detector) -> None:
    assert dlib_det.detect(np.full((200, 200, 3), 127, np.uint8)) == []
    assert get_detector("haar").detect(np.zeros((120, 160, 3), np.uint8)) == []


def test_none_detector_is_whole_image() -> None:
    faces = get_detector("none").detect(np.zeros((30, 50, 3), np.uint8))
    assert faces == [Face(box=(0.0, 0.0, 50.0, 30.0), score=1.0)]


def test_sorting_largest_first() -> None:
    class Fake(Detector):
        def _detect(self, rgb: np.ndarray) -> list[Face]:
            return [Face((0, 0, 5, 5)), Face((0, 0, 20, 10)), Face((0, 0, 8, 8))]

    areas = [f.area for f in Fake().detect(np.zeros((40, 40, 3), np.uint8))]
    assert areas == [200, 64, 25]


def test_names_and_errors() -> None:
    assert set(list_detectors()) == {"dlib", "haar", "lbp", "none"}
    assert DEFAULT_DETECTOR in list_detectors()
    with pytest.raises(BadConfigError, match="unknown face detector 'mtcnn'"):
        get_detector("mtcnn")
    with pytest.raises(BadConfigError, match="bad option"):
        get_detector("haar", nonsense=1)
    with pytest.raises(BadImageError, match=r"\[H, W, 3\]"):
        get_detector("none").detect(np.zeros((4, 4), np.uint8))
    with pytest.raises(BadImageError, match="uint8"):
        get_detector("haar").detect(np.zeros((4, 4, 3), np.float32))


ALL_FIXTURES = [*SINGLE, "two_faces_live_and_replay.png"]


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_fast_detector_options() -> None:
    from vitfas.faces import FAST_DETECT_SIDE, fast_detector_options

    assert fast_detector_options("dlib", 480) == {"max_side": 480, "upsample": 0, "gray": True}
    assert fast_detector_options("default", 320)["max_side"] == 320
    assert fast_detector_options("haar", 400) == {"max_side": 400}
    assert fast_detector_options("none", 480) == {}
    assert FAST_DETECT_SIDE == 480
    with pytest.raises(BadConfigError, match="detection side"):
        fast_detector_options("dlib", 0)


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_grey_hog_finds_the_same_boxes(face_fixtures: Path, name: str) -> None:
    rgb = load_image(face_fixtures / name)
    colour = get_detector("dlib").detect(rgb)
    grey = get_detector("dlib", gray=True).detect(rgb)
    assert len(grey) == len(colour)
    for a, b in zip(colour, grey):
        assert _iou(a.box, b.box) > 0.9


def test_fast_side_keeps_every_fixture_face(face_fixtures: Path) -> None:
    """Recall on the fixtures (8 faces): the fast face stage (480 px grey copy, default
    fallback) finds every face the default finds, boxes mapped back to full resolution
    (IoU >= 0.5 with the default's), and the grey copy alone does too (no fallback)."""
    from vitfas.faces import fast_detector

    _fixture_recall(face_fixtures, fast_detector("dlib", 480, fallback=False))
    _fixture_recall(face_fixtures, fast_detector("dlib", 480))


def _fixture_recall(face_fixtures: Path, fast: Detector) -> None:
    found = total = 0
    for name in ALL_FIXTURES:
        rgb = load_image(face_fixtures / name)
        ref = get_detector("dlib").detect(rgb)
        got = fast.detect(rgb)
        total += len(ref)
        found += sum(max((_iou(r.box, g.box) for g in got), default=0) >= 0.5 for r in ref)
    assert total == 8
    assert found == total


class _Stub(Detector):
    """Finds the given boxes (in the pixels of the image it is handed), records the sizes
    it was handed."""

    name = "stub"

    def __init__(self, boxes: list[tuple[float, float, float, float]], max_side: int) -> None:
        super().__init__(max_side=max_side)
        self.boxes = boxes
        self.seen: list[tuple[int, int]] = []

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        self.seen.append(rgb.shape[:2])
        return [Face(box=b) for b in self.boxes]


def test_fallback_runs_the_full_pass_only_when_the_fast_one_finds_nothing() -> None:
    from vitfas.faces import FallbackDetector

    img = np.zeros((600, 1200, 3), np.uint8)  # 1200 px wide: the fast copy is 2.5x smaller
    # fast pass finds nothing -> the full pass (640 px copy, factor 1200/640 = 1.875) is used
    fast, full = _Stub([], max_side=480), _Stub([(64.0, 32.0, 128.0, 96.0)], max_side=640)
    det = FallbackDetector(fast, full)
    faces = det.detect(img)
    assert fast.seen == [(240, 480)] and full.seen == [(320, 640)]
    assert det.last_used == "full"
    assert faces[0].box == pytest.approx((120.0, 60.0, 240.0, 180.0))  # x 1.875
    # fast pass finds a face -> the full pass is not run; box mapped back x 2.5
    fast, full = _Stub([(40.0, 20.0, 80.0, 60.0)], max_side=480), _Stub([], max_side=640)
    det = FallbackDetector(fast, full)
    faces = det.detect(img)
    assert full.seen == [] and det.last_used == "fast"
    assert faces[0].box == pytest.approx((100.0, 50.0, 200.0, 150.0))
    with pytest.raises(BadImageError, match="uint8"):
        det.detect(np.zeros((8, 8, 3), np.float32))


def test_fast_detector_is_grey_480_with_a_default_fallback() -> None:
    from vitfas.faces import FallbackDetector, fast_detector

    det = fast_detector("dlib", 480)
    assert isinstance(det, FallbackDetector)
    assert (det.fast.max_side, det.fast.gray, det.fast.upsample) == (480, True, 0)
    assert (det.full.max_side, det.full.gray, det.full.upsample) == (640, False, None)
    plain = fast_detector("dlib", 480, fallback=False)
    assert not isinstance(plain, FallbackDetector) and plain.max_side == 480
    assert fast_detector("none", 480).name == "none"
    mine = get_detector("dlib", max_side=800)
    assert fast_detector("dlib", 400, full=mine).full is mine
    # a blank image: neither pass finds a face, the answer is an empty list
    assert det.detect(np.zeros((480, 640, 3), np.uint8)) == [] and det.last_used == "full"
