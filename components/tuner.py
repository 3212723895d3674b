"""TFX's Tuner, plus a trials table (every trial's values, validation accuracy and time).

Stock TFX writes only the completed trials' scores (`tuner_results.json`); `trials.json`, beside
it in the TunerResults artifact, has every trial, failed ones included, with its wall time, and
`python -m pipeline.inspect` shows it.

The search keeps its trials in a folder that outlives a killed execution (`search_folder`), so
a restarted run keeps the trials that had finished and only retries the one that was cut.
"""
import glob
import hashlib
import json
import os
import shutil
from typing import Any, Dict, List

import keras
from tfx.components.tuner import component as tuner_component
from tfx.components.tuner import executor as tuner_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

from base.constants import TRIAL_SECONDS, TRIALS_FILE, VAL_ACCURACY



def trials_table(tuner) -> List[Dict[str, Any]]:
  """One row per trial, in trial order: id, status, every hyperparameter, objective, seconds."""
  rows = []
  for trial in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id):
    metrics = trial.metrics
    row = {'trial_id': trial.trial_id, 'status': str(trial.status)}
    row.update({k: v for k, v in trial.hyperparameters.values.items()})
    row[VAL_ACCURACY] = (metrics.get_best_value(VAL_ACCURACY)
                        if metrics.exists(VAL_ACCURACY) else None)
    row['seconds'] = (metrics.get_last_value(TRIAL_SECONDS)
                      if metrics.exists(TRIAL_SECONDS) else None)
    rows.append(row)
  return rows


RESUME_DIR = '.resume'  # in the Tuner's folder of the pipeline root, beside its outputs


def search_folder(input_dict, output_dict, exec_properties) -> str:
  """The search's working folder: outside the execution's own folders (TFX gives a retry new
  ones), named by what makes two searches the same: the input artifacts' URIs and the
  execution properties (the tuning and training config, the code fingerprint)."""
  key = json.dumps({'inputs': {k: sorted(a.uri for a in v) for k, v in input_dict.items()},
                    'exec_properties': exec_properties}, sort_keys=True, default=str)
  uri = artifact_utils.get_single_uri(
      output_dict[standard_component_specs.BEST_HYPERPARAMETERS_KEY])
  node_dir = os.path.dirname(os.path.dirname(os.path.normpath(uri)))
  return os.path.join(node_dir, RESUME_DIR, hashlib.sha256(key.encode()).hexdigest()[:16])


def kept_trials(folder: str) -> int:
  """The finished trials a stopped search left in `folder`; a folder whose state files do not
  all parse (a kill mid-write) is removed and counts none: the search starts again."""
  states = glob.glob(os.path.join(folder, '*', '*.json'))
  trials = glob.glob(os.path.join(folder, '*', 'trial_*', 'trial.json'))
  finished = 0
  try:
    for path in states + trials:
      with open(path) as f:
        state = json.load(f)
      finished += path in trials and state.get('status') == 'COMPLETED'
  except ValueError:
    shutil.rmtree(folder, ignore_errors=True)
    return 0
  return finished


class Executor(tuner_executor.Executor):
  """The stock search, then the trials table into the TunerResults artifact."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    folder = search_folder(input_dict, output_dict, exec_properties)
    kept = kept_trials(folder)
    if kept:
      print(f'Tuner: resuming the search; {kept} finished trial(s) kept from a run that was '
            f'stopped ({folder})', flush=True)
    policy = keras.mixed_precision.global_policy()
    try:
      tuner = tuner_executor.search(input_dict, exec_properties, folder)
    finally:  # tuner_fn sets the run's precision; later components in this process get theirs
      keras.mixed_precision.set_global_policy(policy)
    tuner_executor.write_best_hyperparameters(tuner, output_dict)
    uri = artifact_utils.get_single_uri(output_dict[standard_component_specs.TUNER_RESULTS_KEY])
    io_utils.write_string_file(os.path.join(uri, TRIALS_FILE),
                               json.dumps(trials_table(tuner), indent=2, default=str))
    shutil.rmtree(folder, ignore_errors=True)  # the results are out: a rerun is a new search


class Tuner(tuner_component.Tuner):
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
