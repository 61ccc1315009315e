"""Where the time of `cospeech generate` goes, as JSON: this checkout's `cospeech benchmark --cli`
(the measurement lives in `cospeech.bench_cli`; options as that command's).

    python benchmarks/startup.py
    python benchmarks/startup.py --reps 5 --json out.json
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cospeech.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["benchmark", "--cli", *sys.argv[1:]]))
