"""Ray Tune + Optuna orchestration and the `vae-search` command line, in three layers:
`search.cli` (the command line) over `search.engine` (the run; the only layer that imports
ray) over `search.store` (the experiment folder's files). `search.config` is shared by all."""
