"""Runs an NvmlSource in its own process, for tests that need their own libnvidia-ml.so.1.

Loads NVML the way the daemon does (dlopen through LD_LIBRARY_PATH) on a ManualClock and answers
commands read from stdin, one JSON line each on stdout:
  read          -> the SourceReading (gpus via gpuwatch.sources.codec)
  advance SECS  -> moves the clock
Logs go to stderr.
"""

from __future__ import annotations

import json
import logging
import sys

from gpuwatch.sources.clock import ManualClock
from gpuwatch.sources.codec import sample_to_dict
from gpuwatch.sources.nvml import NvmlSource


def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    clock = ManualClock()
    source = NvmlSource(clock, backoff_initial_s=1.0, backoff_max_s=8.0)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "read":
            reading = source.read()
            answer = {
                "gpus": [sample_to_dict(sample) for sample in reading.gpus],
                "driver_version": reading.driver_version,
                "errors": dict(reading.errors),
                "dropped": dict(reading.dropped),
                "error": reading.error,
            }
        elif command == "advance":
            clock.advance(float(argument))
            answer = {"monotonic": clock.monotonic()}
        else:
            break
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    source.close()


if __name__ == "__main__":
    main()
