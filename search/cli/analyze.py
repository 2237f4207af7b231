"""`vae-search analyze EXPERIMENT`: selection.json, figures/, best_model/ and report.html.

Everything is computed first; files are then written atomically (temporary file, rename),
so an interrupted analysis never leaves a truncated file where a good one was.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import shutil
import tempfile
from pathlib import Path

from search.cli import args as types
from vae.errors import UsageError
from vae.files import atomic_write_bytes, atomic_write_text

HELP = "choose the latent size; write selection.json, figures, report.html, best_model/"
TSNE_POINTS = 2000


DECISION = ("rule", "metric", "tolerance_db", "tolerance_nats")  # run's settings that analyze may change


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="the experiment folder printed by `run`")
    types.add_settings(parser, DECISION, note="analyze: the run's own unless given")


def main(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from analysis import figures as figs
    from analysis.answers import race_history, side_by_side
    from analysis.latents import latent_means, reconstruction_examples, stratified_subset, tsne_embedding
    from analysis.report import render
    from analysis.rules import METRICS, RULE
    from analysis.summary import summarize, usage_words
    from search.cli.output import race_on_line
    from search.engine.data import load_splits
    from search.store.files import (
        BEST_MODEL_DIR,
        FIGURES_DIR,
        HISTORY_FILE,
        JOURNAL_FILE,
        RACE_FILE,
        REPORT_FILE,
        SELECTION_FILE,
        SUMMARY_FILE,
    )
    from search.store.lock import refuse_if_running, repair_journal
    from search.store.race import read_race
    from search.store.record import Experiment
    from search.store.table import read_trials
    from vae import evaluate, load_model

    experiment = Experiment.open(args.experiment)
    refuse_if_running(experiment.path)
    notice = repair_journal(experiment.path / JOURNAL_FILE)  # for optuna.load_study and optuna-dashboard
    if notice:
        print(f"notice: {notice}")
    config = experiment.config
    trials = read_trials(experiment.path)
    history_file = experiment.path / HISTORY_FILE
    history = (
        pd.read_csv(history_file)
        if history_file.is_file()
        else pd.DataFrame(columns=["phase", "latent_dim", "trial_id"])
    )
    # the run's decision settings, with the rule, metric and tolerances asked for here
    asked = {name: getattr(args, name) for name in DECISION}
    decision = dataclasses.replace(config.decision, **{k: v for k, v in asked.items() if v is not None})
    metric = decision.metric
    summary = summarize(trials, latent_dims=list(config.latent_dims), metric=metric)
    selection = decision.select(summary)
    # the confidence of this rule's choice, from whatever seeds trials exist, discounted for the
    # looks racing took exactly as the run's own racing did; and the answer by the other metric
    races = decision.both_answers(trials)
    race = races[metric]
    latent_notes = side_by_side(races) + usage_words(summary)
    stop_reason = read_race(experiment.path / RACE_FILE).stop_reason

    checkpoint = trials.loc[trials["trial_id"] == selection.best_trial_id, "checkpoint"]
    if checkpoint.empty or not isinstance(checkpoint.iloc[0], str):
        raise UsageError(f"trial {selection.best_trial_id} has no checkpoint in {experiment.path}")
    with _local_checkpoint(experiment, checkpoint.iloc[0]) as folder:
        model = load_model(folder)
        # the test split of the source the search actually used (never used for the choice)
        splits, _ = load_splits(config, pinned=experiment.record)
        _, test = evaluate(model, splits.test, beta=config.beta)
        _, val = evaluate(model, splits.val, beta=config.beta)  # the chosen model's latent use, as its trial saw it

        subset = stratified_subset(splits.test, TSNE_POINTS, seed=config.seed)
        embedding = tsne_embedding(latent_means(model, subset.pixels), seed=config.seed)
        chosen = selection.latent_dim
        pictures = {
            # the rule's threshold is drawn on the figure of the metric it chose by
            "psnr_vs_latent": figs.psnr_vs_latent(summary, chosen=chosen, rule=selection.rule,
                                                  threshold=selection.threshold if metric == "psnr" else None),
            "psnr_by_digit": figs.metric_by_digit(summary, "psnr", chosen=chosen),
            "mse_by_digit": figs.metric_by_digit(summary, "mse", chosen=chosen),
            "loss_curves": figs.loss_curves(history, latent_dim=chosen),
            "latent_tsne": figs.latent_tsne(embedding, subset.labels.numpy(), latent_dim=chosen),
            "reconstructions": figs.reconstructions(*reconstruction_examples(model, splits.test, seed=config.seed)),
            "search_history": figs.search_history(trials),
            "race": figs.race(race_history(trials, METRICS[metric].column), chosen=chosen, confidence=race.confidence,
                              tolerance=race.tolerance if RULE[decision.rule].uses_tolerance else None, metric=metric),
            "active_units": figs.active_units(summary, chosen=chosen, threshold=val["active_threshold"]),
            "kl_by_dim": figs.kl_by_dim(val["kl_by_dim"], val["mu_var_by_dim"], latent_dim=chosen,
                                        threshold=val["active_threshold"]),
        }
        if summary["nll_iw"].notna().any():
            pictures["nll_vs_latent"] = figs.nll_vs_latent(summary, chosen=chosen, rule=selection.rule,
                                                           threshold=selection.threshold if metric == "nll" else None)
        pngs = {name: _png(figure) for name, figure in pictures.items()}

        result = {
            **selection.to_dict(),
            "metric": metric,
            "confidence": round(race.confidence, 4),
            "stop_reason": stop_reason,
            "contenders": list(race.contenders),
            "close_call": race.close_call(),
            "p_answer": {str(d): round(p, 4) for d, p in race.p_answer.items()},
            "answers": {
                name: {"latent_dim": r.latent_dim, "confidence": round(r.confidence, 4)} for name, r in races.items()
            },
            "chosen_latent_use": {
                k: val[k] for k in ("active_units", "active_threshold", "kl_by_dim", "mu_var_by_dim")
            },
            "test": {**test, "split": f"{splits.source} test ({len(splits.test)} images)"},
        }
        html = render(
            name=experiment.path.name,
            selection=selection,
            summary=summary,
            trials=trials,
            test=test,
            figures=pngs,
            source=splits.source,
            confidence=race.confidence,
            stop_reason=stop_reason,
            close_call=race.close_call(),
            provenance=_provenance(experiment, trials),
            latent_notes=latent_notes,
        )

        # everything is computed: now write, each file atomically, best_model/ swapped in whole
        _export_model(folder, experiment.path / BEST_MODEL_DIR)
        for name, png in pngs.items():
            atomic_write_bytes(experiment.path / FIGURES_DIR / f"{name}.png", png)
        atomic_write_text(experiment.path / SELECTION_FILE, json.dumps(result, indent=2) + "\n")
        atomic_write_text(experiment.path / SUMMARY_FILE, summary.to_csv(index=False))
        report = atomic_write_text(experiment.path / REPORT_FILE, html)
        experiment.upload()

    print(f"chosen latent size: {chosen} (confidence {race.confidence:.2f})")
    print(f"rule: {selection.rule}")
    if race.close_call():
        print(f"close call: {race.close_call()}")
    for line in latent_notes:
        print(line)
    for note in selection.notes:
        print(f"note: {note}")
    print(f"test split: MSE {test['mse_mean']:.4f}, PSNR {test['psnr_mean']:.2f} dB (trial {selection.best_trial_id})")
    if decision == config.decision:  # the run's own decision: it can race on
        line = race_on_line(experiment.path, trials, race.confidence, config, experiment.record.get("address"))
        if line:
            print(line)
    print(f"report: {report}")
    return 0


@contextlib.contextmanager
def _local_checkpoint(experiment, reference: str):
    """A local folder holding the checkpoint (downloaded first when it lives at a URI)."""
    from search.store.storage import copy, is_uri

    reference = experiment.local_reference(reference)
    if not is_uri(reference):
        yield experiment.path / reference
        return
    with tempfile.TemporaryDirectory() as folder:
        copy(reference, folder)
        yield Path(folder)


def _png(drawing) -> bytes:
    """PNG bytes of a Figure, or of the Figure an Axes belongs to."""
    from matplotlib.figure import Figure

    figure = drawing if isinstance(drawing, Figure) else drawing.figure
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _export_model(checkpoint: Path, target: Path) -> None:
    """Copy the model files (weights + config, no optimizer state) and swap the folder in."""
    from vae.checkpoint import CONFIG_FILE, MODEL_FILE

    staging = Path(tempfile.mkdtemp(prefix=".best_model.", dir=target.parent))
    try:
        staging.chmod(0o755)
        for name in (MODEL_FILE, CONFIG_FILE):
            shutil.copy2(checkpoint / name, staging / name)
        old = target.with_name(".best_model.old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _provenance(experiment, trials) -> dict:
    """How the run was made, for the report: command, settings, data, versions, compute."""
    record, config = experiment.record, experiment.config
    data = record.get("data") or {}
    sizes = data.get("sizes", {})
    wall = record.get("wall_time_s")
    return {
        "command": record.get("command", "(not recorded)"),
        "race_ons": [entry["command"] for entry in record.get("race_ons", [])],
        "preset": record.get("preset") or "?",
        "settings": config.to_dict(),
        "data": (
            f"{data.get('source', record.get('source', '?'))} in {data.get('data_dir', config.data_dir)}: "
            f"{sizes.get('train', '?')} train / {sizes.get('val', '?')} validation / {sizes.get('test', '?')} test; "
            f"sha256 {str(data.get('digest', '?'))[:16]}…"
        ),
        "versions": ", ".join(
            f"{k} {v}" for k, v in (record.get("versions") or {"ray": record.get("ray_version", "?")}).items()
        ),
        "compute": {
            "trials": len(trials),
            "epochs": int(trials["epochs"].fillna(0).sum()),
            "core_seconds": float(trials["time_s"].fillna(0).sum() * config.cpus_per_trial),
            "wall_time": f"{wall:.0f} s" if wall else "(not recorded)",
        },
    }
