"""Reports across runs.

report     every run's lm-eval results in one table with plots (make report)
compare    base against fine-tuned on lm-eval's benchmark groups, with p-values (make compare)
pick_base  un-tuned bases ranked on one sample of a documents dataset (make pick-base)
"""
