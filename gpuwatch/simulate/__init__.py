"""`gpuwatch simulate`: closed-loop runs of simulated fleets, comparing ways of admitting jobs.

scenario.py describes a run, and scenario_file.py (with toml_checks.py) reads one from TOML;
workload.py draws its jobs; cluster.py holds the simulated GPUs (the sim source's physics) and
their jobs; controllers/ decide where jobs start; gateway.py makes jobs wait, retry and give up;
engine.py is the virtual-time loop and runner.py runs every controller; metrics.py, report.py
and plot.py turn the runs into a table and a figure.
"""
