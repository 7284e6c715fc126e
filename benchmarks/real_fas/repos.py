"""The 15 public repositories of real live/spoof face photos (issue 13) and how each is read.

Every entry names the commit the images are taken from, the folders extracted, the kind of
image (``webcam``: 640x480 webcam frames with YOLO face boxes; ``crop``: face crops;
``whole``: CelebA-Spoof whole images, faces found by a detector) and how the label is
found. Only images and label files are extracted; no code of these projects is used.
Licences are unclear for all but Eyashita/VisageTrack (MIT): development evaluation only,
never committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Repo:
    """One source repository.

    Attributes:
        name: ``owner/name`` on GitHub.
        commit: the commit the images come from (prefix, resolved in the git directory).
        kind: ``webcam``, ``crop`` or ``whole``.
        paths: folders extracted at ``commit``.
        label_from: ``folder`` (live/real vs spoof/fake folder names), ``classes`` (YOLO
            class ids ``0=spoof,1=live``, as in every repo's ``data.yaml``: names
            ``[fake, real]``) or ``prefix`` (file name starts ``Live_``/``Spoof_``).
        note: why the label source was chosen, for the README.
    """

    name: str
    commit: str
    kind: str
    paths: tuple[str, ...]
    label_from: str = "folder"
    note: str = ""
    prefix_paths: tuple[str, ...] = field(default=())

    @property
    def dataset(self) -> str:
        """The manifest's ``dataset`` value: the owner (unique among the 15)."""
        return self.name.split("/")[0]

    @property
    def mirror_dir(self) -> str:
        """Folder name of the fetched git directory: ``owner+name``."""
        return self.name.replace("/", "+")


CLASSES = "0=spoof,1=live"

REPOS: tuple[Repo, ...] = (
    Repo("ReynaraEzra/Liveness-Detection", "ff79a15779ca", "whole",
         ("Dataset/Live", "Dataset/Spoof")),
    Repo("nuredinali/Face-recognition-with-liveness-detection-and-recognizing-unknown-face-"
         "added.", "f06c24234bdb", "crop", ("dataset/real", "dataset/fake")),
    Repo("CHELSEA234/Multi-domain-learning-FAS", "8667dbcd316b", "crop",
         ("source_SiW_Mv2/demo/live", "source_SiW_Mv2/demo/spoof"), label_from="folder",
         prefix_paths=("source_multi_domain/FASMD/SIWM_list",),
         note="SIWM_list frames labelled by file name prefix Live_/Spoof_"),
    Repo("Kraken000/Anti-spoofing", "42feea4035aa", "crop",
         ("dataset/train/real", "dataset/train/fake"), note="images deleted in later commits"),
    Repo("SoorajOfficial2023/Anti-spoofing-face-recognition-system", "e03e4638efb8", "webcam",
         ("Dataset/real", "Dataset/fake"), label_from="classes"),
    Repo("Dracarys261/SpoofingDetection", "76de33549f85", "webcam",
         ("Dataset/Real", "Dataset/Fake"), label_from="classes"),
    Repo("srimuthukumar786/Intruders-Detection-Alarm-System", "d3f89e302e76", "webcam",
         ("Dataset/Real", "Dataset/Fake"), label_from="classes"),
    Repo("DangThanhLiem/LVTN_Detected", "33eb03a0f37f", "webcam",
         ("Dataset/Real", "Dataset/Fake"), label_from="classes"),
    Repo("Pagolu-Raghavendra/FaceAttendanceSystemProject", "8d81170b465b", "webcam",
         ("Dataset/Real", "Dataset/Fake"), label_from="classes"),
    Repo("kalyanipatil0515/AntiSpoofing", "3d9c10245d16", "webcam",
         ("Dataset/Real", "Dataset/Fake"), label_from="classes"),
    Repo("Codersworld-23/Antispoof", "fc929edd26d1", "webcam",
         ("Dataset/Real", "Dataset/Fake"), label_from="classes"),
    Repo("Eyashita/VisageTrack", "475a0e2b9aa5", "webcam",
         ("Dataset/Real", "Dataset/Fake"), label_from="folder",
         note="every label file says class 0: labels from the Real/Fake folders"),
    Repo("sumanadhikari0625/Liveliness-Detection", "4e85413a32e2", "webcam",
         ("Dataset/SplitData",), label_from="classes",
         note="no Real/Fake folders: classes from the YOLO labels (images/ + labels/)"),
    Repo("code-with-prabhu/livenessDetection", "1531a2d01801", "webcam",
         ("Dataset/Real", "Dataset/Fake"), label_from="folder",
         note="Fake frames labelled 1 by mistake: labels from the Real/Fake folders"),
    Repo("Spp77/Anti-Spoofing", "a7add86b3ff5", "webcam",
         ("Dataset/Real", "Dataset/Fake"), label_from="classes"),
)

#: cross-camera: whole repositories held out (the rest of the webcam sets train)
CROSS_CAMERA_DEV = ("Pagolu-Raghavendra", "srimuthukumar786")
CROSS_CAMERA_TEST = ("Spp77", "kalyanipatil0515", "DangThanhLiem")
