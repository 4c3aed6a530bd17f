"""The metrics tests reuse the exposure tests' helpers (hand-built decisions, raw HTTP, serve processes)."""

import sys
from pathlib import Path

# tests/ is not a package: make tests/exposure/serve_helpers importable from here, as pytest does
# for the exposure tests themselves.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "exposure"))
