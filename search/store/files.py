"""Every file and folder in an experiment folder, by name: the one place they are named.
Readers and writers live beside it in `search.store` (run.json: `record`, race.json: `race`,
status.json: `status`, driver.lock: `lock`, the tables: `table`, Tune's state: `tune_files`);
`analyze` writes the last five. Kept free of imports: the command line reads it for `--help`."""

RUN_FILE = "run.json"  # resolved settings, data record, what is done
TUNE_DIR = "tune"  # Ray Tune's experiment (Tuner.restore works on it)
JOURNAL_FILE = "optuna.journal"  # the Optuna study of the search stage
RACE_FILE = "race.json"  # the racing state: stage, decision, confidence, stop reason
STATUS_FILE = "status.json"  # where a running run stands
LOCK_FILE = "driver.lock"  # held by the driver while it works
DRIVER_LOG = "driver.log"  # what Ray said about failed trials and lost nodes
DRIVER_ERROR_LOG = "driver-error.log"  # why the run stopped, when a full disk stopped it
TRIALS_FILE = "trials.csv"  # one row per trial
HISTORY_FILE = "history.csv"  # one row per trial and epoch
# written by `vae-search analyze`
SELECTION_FILE = "selection.json"
SUMMARY_FILE = "summary.csv"
REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
BEST_MODEL_DIR = "best_model"
