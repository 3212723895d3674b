"""Tuner -> Trainer on generated data: the Trainer really trains with the tuned values."""
import json
import os
import shutil

import pytest

from base.constants import TRIALS_FILE
from base import constants
from base.configs import RunnerConfig, TuningConfig
from tests import e2e

pytestmark = pytest.mark.e2e


def _trained_with(config):
  model_dir, _ = e2e.model_dirs(config)
  with open(os.path.join(model_dir, constants.TRAINING_STATS_FILE)) as f:
    stats = json.load(f)
  with open(os.path.join(model_dir, 'Format-Serving', constants.PROVENANCE_DIR,
                         'training_config.json')) as f:
    return stats, json.load(f)


@pytest.fixture(scope='module')
def tuned(pipeline_run, tmp_path_factory):
  """The shared run's config with a 2-trial random search (reusing its cached data steps)."""
  config, _ = pipeline_run
  runner = RunnerConfig(output_dir=str(tmp_path_factory.mktemp('tuned')),
                        pipeline_name=config.runner.pipeline_name)
  shutil.copy(config.runner.metadata_path, runner.metadata_path)
  tuned_config = config.replace(
      runner=runner, tuning=TuningConfig(tuner='random', tuner_trials=2, tuner_epochs=1))
  tuned_config, _ = e2e.run_pipeline(tuned_config)
  return tuned_config


def test_trials_table_has_every_trial(tuned):
  results = e2e.latest_artifact(tuned, 'TunerResults')
  with open(os.path.join(results.uri, TRIALS_FILE)) as f:
    trials = json.load(f)
  assert len(trials) == 2
  for trial in trials:
    assert trial['val_accuracy'] is not None and trial['seconds'] > 0
    assert {'learning_rate', 'optimizer', 'batch_size', 'weight_decay', 'augment'} <= set(trial)
  # The best hyperparameters are those of a trial with the highest validation accuracy.
  best = e2e.latest_artifact(tuned, 'HyperParameters')
  with open(os.path.join(best.uri, 'best_hyperparameters.txt')) as f:
    values = json.load(f)['values']
  top = max(t['val_accuracy'] for t in trials)
  names = ('learning_rate', 'optimizer', 'batch_size', 'weight_decay', 'augment')
  assert any(all(t[n] == values[n] for n in names) for t in trials if t['val_accuracy'] == top)


def test_trainer_used_the_best_hyperparameters(tuned):
  best = e2e.latest_artifact(tuned, 'HyperParameters')
  with open(os.path.join(best.uri, 'best_hyperparameters.txt')) as f:
    values = json.load(f)['values']
  stats, trained = _trained_with(tuned)
  assert stats['hyperparameters']['source'] == 'tuner'
  for name in ('learning_rate', 'optimizer', 'batch_size', 'weight_decay', 'augment'):
    assert trained[name] == values[name], name  # the config the model was trained with
  assert stats['batch_size'] == values['batch_size']  # measured by the training timer
  assert trained['epochs'] == tuned.training.epochs  # tuning epochs do not leak into training


def test_imported_hyperparameters(tuned, tmp_path):
  best = e2e.latest_artifact(tuned, 'HyperParameters')
  runner = RunnerConfig(output_dir=str(tmp_path), pipeline_name=tuned.runner.pipeline_name)
  shutil.copy(tuned.runner.metadata_path, runner.metadata_path)
  imported = tuned.replace(runner=runner, tuning=TuningConfig(
      hyperparameters=os.path.join(best.uri, 'best_hyperparameters.txt')))
  imported, _ = e2e.run_pipeline(imported)
  stats, trained = _trained_with(imported)
  assert stats['hyperparameters']['source'].startswith('imported: ')
  with open(os.path.join(best.uri, 'best_hyperparameters.txt')) as f:
    values = json.load(f)['values']
  assert trained['learning_rate'] == values['learning_rate']
  assert trained['optimizer'] == values['optimizer']


def test_inspect_shows_the_trials_table(tuned):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run(
      [sys.executable, '-m', 'pipeline.inspect', '--output-dir', tuned.runner.output_dir, '--run',
       'latest', '--json'], capture_output=True, text=True, cwd=root, timeout=300)
  assert result.returncode == 0, result.stderr
  details = json.loads(result.stdout)
  assert len(details['tuning']['trials']) == 2
  assert details['training']['stats']['hyperparameters']['source'] == 'tuner'
  text = subprocess.run(
      [sys.executable, '-m', 'pipeline.inspect', '--output-dir', tuned.runner.output_dir, '--run',
       'latest'], capture_output=True, text=True, cwd=root, timeout=300).stdout
  assert 'Tuning (2 trials, best first' in text and 'hyperparameters from tuner' in text
