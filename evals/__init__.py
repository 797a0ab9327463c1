"""molzoo evals."""
