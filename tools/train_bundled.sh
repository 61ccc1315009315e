#!/usr/bin/env bash
# Reproduces the bundled default model from the real clips beside a development checkout
# (../shared/data: the BEAT2 take and five of the six SHOW clips; one SHOW clip is held out as
# test data, see tools/shared_split.csv). Writes runs/bundled/ and copies the final EMA weights,
# in float16, into src/cospeech/assets/default_model/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
CACHE=${CACHE:-cache/shared}
RUN=${RUN:-runs/bundled}
cospeech prepare beat2 "$DATA/beat2" -o "$CACHE" --split-file tools/shared_split.csv
cospeech prepare show "$DATA/show" -o "$CACHE" --split-file tools/shared_split.csv
cospeech train --data "$CACHE" -o "$RUN" --preset default "$@"
python - "$RUN" <<'PY'
import sys
import cospeech
from cospeech.generator import bundled_model_path
model = cospeech.load_model(sys.argv[1])
model.save(bundled_model_path(), half=True)
print("bundled model written to", bundled_model_path())
PY
python tools/model_card.py "$RUN" src/cospeech/assets/default_model
