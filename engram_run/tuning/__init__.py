"""Tuning: grids of runs (`make sweep`) on this machine or a SLURM cluster, the learning-rate
and epoch finders built on them (`make lr-find`, `make epoch-find`), and the loss and recall
curves they read from each run's logs."""
