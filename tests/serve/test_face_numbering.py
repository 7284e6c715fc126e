"""Faces are numbered from 0 on the web page, as in predict's and explain's file names."""

from __future__ import annotations

import re
from importlib import resources


def test_web_page_numbers_faces_from_zero() -> None:
    js = (resources.files("vitfas.serve") / "static" / "app.js").read_text()
    labels = re.findall(r"`[^`]*face \$\{([^}]*)\}[^`]*`", js)
    labels += re.findall(r"const label = `\$\{([^}]*)\}:", js)
    assert labels and all(x == "i" for x in labels), labels  # the 0-based index, no "+ 1"
