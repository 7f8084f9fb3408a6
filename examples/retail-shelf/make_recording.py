"""Render `shelf.avi`: a shelf camera, 64x64 RGB at 1 frame/s for 3 minutes, and `truth.json`.

The view holds four shelf regions of 32x32 (two shelves, left and right), each with 8 product
slots, drawn with the renderer the shipped `shelf_occ` models were trained on
(`tools/make_models.py`: `render_shelf`). Shoppers take products one at a time (about one every
40 s per region, seeded); at 2:00 the bottom-left region is restocked. A region's look changes
only when its stock does (plus sensor noise on every frame). `truth.json` lists the stock of
every region at every second.

    python examples/retail-shelf/make_recording.py
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SECONDS = 180
REGIONS = {
    "top-left": (0, 0),
    "top-right": (32, 0),
    "bottom-left": (0, 32),
    "bottom-right": (32, 32),
}
RESTOCK = ("bottom-left", 120)


def _renderer():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_models", ROOT / "tools" / "make_models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render_shelf


def main() -> None:
    import cv2

    render = _renderer()
    rng = np.random.default_rng(44)
    stock = {name: np.ones(8, bool) for name in REGIONS}
    stock["top-right"][[1, 4, 6]] = False
    looks: dict[str, np.ndarray] = {}
    out = cv2.VideoWriter(str(HERE / "shelf.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 1, (64, 64))
    out.set(cv2.VIDEOWRITER_PROP_QUALITY, 100)
    truth = []
    for t in range(SECONDS):
        for name in REGIONS:
            if t == RESTOCK[1] and name == RESTOCK[0]:
                stock[name][:] = True
                looks.pop(name, None)
            elif t > 0 and rng.random() < 1 / 40 and stock[name].any():
                stock[name][rng.choice(np.flatnonzero(stock[name]))] = False
                looks.pop(name, None)
            if name not in looks:  # a new look only when the stock changed
                seed = int(rng.integers(1 << 31))
                looks[name] = render(np.random.default_rng(seed), stock[name])
        frame = np.zeros((64, 64, 3), np.uint8)
        for name, (x, y) in REGIONS.items():
            frame[y : y + 32, x : x + 32] = looks[name]
        noisy = np.clip(frame + rng.normal(0, 1.5, frame.shape), 0, 255).astype(np.uint8)
        out.write(cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR))
        truth.append({"t": t, **{n: int(s.sum()) for n, s in stock.items()}})
    out.release()
    (HERE / "truth.json").write_text("\n".join(json.dumps(r) for r in truth) + "\n")


if __name__ == "__main__":
    main()
