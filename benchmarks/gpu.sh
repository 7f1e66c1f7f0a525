#!/bin/sh
cd "$(dirname "$0")/.." && PYTHONUNBUFFERED=1 PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" exec python3 benchmarks/gpu.py "$@"
