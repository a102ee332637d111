"""Tuning: grids of runs on this machine or a SLURM cluster.

sweep         make sweep: one training run per grid point, one table
sweep_cli     the command lines of sweep, lr-find and epoch-find
sweep_report  a sweep's table (Markdown, CSV, JSON with every curve) and plots
points        one grid point: the job a worker receives, runs and reports
executors     where points run: here in sequence, or as submitit jobs
finders       make lr-find and make epoch-find, built on sweeps
curves        loss and recall curves read from a run's logs
"""
