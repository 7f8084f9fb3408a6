"""Record `recording.jsonl`: three beds' heart rate and SpO2 at 1 Hz for 10 minutes.

Made with edgewax's own seeded vitals generator (`sensor.synthetic`, signal `vitals`), so the
file is the same on every run: bed-2 goes into tachycardia from 2:00 to 6:00, bed-3 desaturates
from 5:00 to 8:00, bed-1 moves a lot from 1:00 to 3:00 (motion artifacts: dropouts that read
0 / 0, and erratic values). One line per reading, as the source node emits it: `ts`, `key` (the
bed), `heart_rate`, `spo2`. A replay over MQTT sends each line to `ward-3/<bed>/vitals`
as `{"ts", "hr", "spo2"}` (see tests/test_examples.py).

    python examples/patient-vitals/make_recording.py
"""

from __future__ import annotations

from pathlib import Path

from edgewax.config.spec import load_spec_text
from edgewax.flows.compiler import compile_spec
from edgewax.testing import run_compiled

HERE = Path(__file__).resolve().parent

RECORDER = """\
version: 1
settings: {dead_letter: {path: null}}
pipelines:
  record:
    nodes:
      - id: beds
        type: sensor.synthetic
        signal: vitals
        keys: [bed-1, bed-2, bed-3]
        rate_hz: 1
        duration: 10m
        start: "2026-01-01T02:00:00Z"
        speed: 0
        seed: 5
        faults:
          - {kind: tachycardia, key: bed-2, at: 2m, duration: 4m}
          - {kind: desaturation, key: bed-3, at: 5m, duration: 3m}
          - {kind: artifact, key: bed-1, at: 1m, duration: 2m}
      - {id: rounded, type: map, set: {heart_rate: "round(heart_rate, 1)", spo2: "round(spo2, 1)"}}
      - {id: out, type: sink.jsonl, path: recording.jsonl.tmp}
"""


def main() -> None:
    tmp = HERE / "recording.jsonl.tmp"
    tmp.unlink(missing_ok=True)
    run_compiled(compile_spec(load_spec_text(RECORDER, HERE)))
    lines = sorted(tmp.read_text().splitlines(), key=lambda line: line)
    tmp.unlink()
    (HERE / "recording.jsonl").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
