"""Studies: many runs on one budget, each answering one question and writing its table and
plot: `make reproduce` (Physics of LM 3.1), `make capacity` (3.3), `make localize`."""
