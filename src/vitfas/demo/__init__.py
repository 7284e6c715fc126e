"""``vitfas demo``: face anti-spoofing end to end on data that ships with scikit-image.

Bona fide: real photos (the LFW crops of ``skimage.data.lfw_subset()``, ``astronaut``,
``coffee``). Attacks: **simulated** print and screen-replay recaptures of them
(:mod:`vitfas.demo.simulate`). :func:`run_demo` builds the set, trains the ``fas_scratch``
recipe (a CDC conv-stem ViT), evaluates, explains and predicts; see :mod:`vitfas.demo.run`.
"""

from vitfas.demo.dataset import SIMULATION_NOTE, build_demo_set, demo_sources
from vitfas.demo.run import DemoModel, format_summary, run_demo

__all__ = ["SIMULATION_NOTE", "DemoModel", "build_demo_set", "demo_sources", "format_summary",
           "run_demo"]
