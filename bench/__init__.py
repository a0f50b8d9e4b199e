"""ComfyGate's benchmark suite: what the gateway costs, side by side, with plots.

Run them all with ``make bench`` (or ``.venv/bin/python -m bench.run_all``); each module is
also a script (``.venv/bin/python -m bench.overhead --help``). Results go to
``docs/benchmarks/`` (a Markdown table, a PNG plot and the raw figures as JSON per benchmark);
``docs/BENCHMARKS.md`` explains the method and reads the figures.
"""
