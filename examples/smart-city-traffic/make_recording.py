"""Render `street.avi`: a fixed street camera, 64x64 RGB at 1 frame/s for 3 minutes.

The scenes come from the renderer the shipped `scenes_cnn` models were trained on
(`tools/make_models.py`: `render_scene`), so the model recognises them: every 5 s a new scene
(a new view: light, horizon, clutter) that holds still for 5 frames, with a person, a vehicle or
nothing in it. Seeded: the file is the same on every run. Also writes `truth.json`, what is in
each scene, to check the model's per-minute counts against.

    python examples/smart-city-traffic/make_recording.py
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FPS = 1
SECONDS = 180
HOLD = 5
CLASSES = ("empty", "person", "vehicle")


def _renderer():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_models", ROOT / "tools" / "make_models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render_scene


def main() -> None:
    import cv2

    render = _renderer()
    rng = np.random.default_rng(2026)
    out = cv2.VideoWriter(str(HERE / "street.avi"), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 64))
    out.set(cv2.VIDEOWRITER_PROP_QUALITY, 100)
    truth = []
    for start in range(0, SECONDS, HOLD):
        cls = int(rng.choice(3, p=[0.3, 0.35, 0.35]))
        frame = render(rng, cls)
        truth.append({"at": start, "scene": CLASSES[cls]})
        for _ in range(HOLD * FPS):
            out.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    out.release()
    (HERE / "truth.json").write_text(json.dumps(truth, indent=0) + "\n")


if __name__ == "__main__":
    main()
