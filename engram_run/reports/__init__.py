"""Reports: every run's lm-eval results in one table with plots (`make report`), and base
against fine-tuned on lm-eval's benchmark groups with p-values (`make compare`)."""
