"""TFX's Tuner, plus a trials table (every trial's values, validation accuracy and time).

Stock TFX writes only the completed trials' scores (`tuner_results.json`); `trials.json`, beside
it in the TunerResults artifact, has every trial, failed ones included, with its wall time, and
`python -m pipeline.inspect` shows it.
"""
import json
import os
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


class Executor(tuner_executor.Executor):
  """The stock search, then the trials table into the TunerResults artifact."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    policy = keras.mixed_precision.global_policy()
    try:
      tuner = tuner_executor.search(input_dict, exec_properties, self._get_tmp_dir())
    finally:  # tuner_fn sets the run's precision; later components in this process get theirs
      keras.mixed_precision.set_global_policy(policy)
    tuner_executor.write_best_hyperparameters(tuner, output_dict)
    uri = artifact_utils.get_single_uri(output_dict[standard_component_specs.TUNER_RESULTS_KEY])
    io_utils.write_string_file(os.path.join(uri, TRIALS_FILE),
                               json.dumps(trials_table(tuner), indent=2, default=str))


class Tuner(tuner_component.Tuner):
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
