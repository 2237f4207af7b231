"""Ray Tune + Optuna orchestration and the `vae-search` command line (the only package that imports ray)."""
