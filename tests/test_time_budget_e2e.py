"""--time-budget from the command line to the real Trainer: the flags and their defaults; the run
ends within its budget and the schedule ends at its final rate on the last chosen epoch
(generated data, the session run's cached data steps)."""
import dataclasses
import json
import math
import os
import shutil

import pytest

from base import constants
from base.configs import RunnerConfig, TrainingConfig
from base.errors import UserError
from modules import trainer
from pipeline import cli
from tests import e2e

BUDGET_MINUTES = 0.5
# The run may exceed its budget when steps get slower after they were measured (other processes
# on the CPU); the epochs' whole-number rounding leaves some room. Stated tolerance: 20%.
TOLERANCE = 0.2
PEAK = 1e-3


def _training(*argv):
  return cli.config_from_args(cli.build_parser('test').parse_args(list(argv))).training


def test_default_is_a_budget_and_a_given_epochs_turns_it_off():
  assert _training().time_budget == 15.0 and _training().epochs == 45
  assert (_training('--epochs', '45').time_budget, _training('--epochs', '3').epochs) == (None, 3)
  assert (_training('--time-budget', '5').time_budget, _training('--time-budget', '5').epochs) == (
      5.0, 45)


def test_epochs_and_time_budget_given_together_are_one_error():
  with pytest.raises(UserError, match='^--epochs and --time-budget exclude each other') as error:
    _training('--time-budget', '5', '--epochs', '3')
  assert '\n' not in str(error.value)


@pytest.mark.parametrize('minutes', [0.0, -1.0])
def test_a_budget_of_no_time_fails_before_training(minutes):
  config = TrainingConfig(model='simple_cnn', time_budget=minutes)
  with pytest.raises(UserError, match=f'--time-budget {minutes}: must be more than 0 minutes'):
    trainer.check_training_config(config, 5, 32, build_model=False)


@pytest.fixture(scope='module')
def budgeted(pipeline_run, tmp_path_factory):
  """The shared run's config with a 30-second budget and room for 1,000 epochs (so the budget,
  not the cap, decides), cosine with its default warmup epoch; ExampleGen and Transform come
  from the shared run's cache (its ML Metadata copied, as in tests/test_tuner_e2e.py)."""
  config, _ = pipeline_run
  runner = RunnerConfig(output_dir=str(tmp_path_factory.mktemp('budget')),
                        pipeline_name=config.runner.pipeline_name)
  shutil.copy(config.runner.metadata_path, runner.metadata_path)
  training = dataclasses.replace(config.training, epochs=1000, time_budget=BUDGET_MINUTES,
                                 schedule='cosine', learning_rate=PEAK)
  budget_config = config.replace(runner=runner, training=training)
  e2e.run_resolved(budget_config, only=e2e.DATA_COMPONENTS + (constants.TRANSFORM,
                                                             constants.TRAINER))
  model_dir, _ = e2e.model_dirs(budget_config)
  with open(os.path.join(model_dir, constants.TRAINING_STATS_FILE)) as f:
    return json.load(f)


@pytest.mark.e2e
def test_the_run_ends_within_its_budget(budgeted):
  record = budgeted['time_budget']
  budget_sec = BUDGET_MINUTES * 60
  assert record['budget_minutes'] == BUDGET_MINUTES and record['budget_sec'] == budget_sec
  assert budgeted['total_training_time_sec'] <= record['training_sec']
  assert record['training_sec'] <= budget_sec * (1 + TOLERANCE)
  # The budget chose the epochs (not the cap of 1,000), and they ran.
  assert 2 <= record['epochs_chosen'] == budgeted['epochs'] < record['max_epochs'] == 1000
  assert budgeted['steps_per_epoch'] == [record['steps_per_epoch']] * budgeted['epochs']


@pytest.mark.e2e
def test_the_recorded_numbers_are_consistent(budgeted):
  record = budgeted['time_budget']
  steps = record['steps_per_epoch']
  assert record['ms_per_step'] > 0 and record['validation_sec_per_epoch'] > 0
  assert record['epoch_end_sec'] >= 0
  assert record['epoch_sec'] == pytest.approx(
      steps * record['ms_per_step'] / 1000 + record['validation_sec_per_epoch']
      + record['epoch_end_sec'])
  # The first epoch was measured; the rest of the budget held this many more whole epochs.
  more = math.floor((record['budget_sec'] - record['decided_after_sec']) / record['epoch_sec'])
  assert record['epochs_chosen'] == 1 + more
  assert record['decided_after_sec'] >= budgeted['epoch_time_sec'][0]
  # The step time the budget measured is the first epoch's (after its first 5 steps or 10%).
  assert record['measured_on'].startswith('epoch 1, ')
  # Every epoch was validated (the budget's estimate counts a validation per epoch).
  assert len(budgeted['val_accuracy']) == budgeted['epochs']
  assert None not in budgeted['val_accuracy']


@pytest.mark.e2e
def test_the_schedule_reaches_its_final_rate_on_the_last_epoch(budgeted):
  record = budgeted['time_budget']
  epochs, rates = record['epochs_chosen'], budgeted['learning_rate']
  assert len(rates) == epochs
  assert rates[0] == pytest.approx(PEAK)  # the end of the warmup epoch, the decay held
  # At the end of epoch k (k >= 1), cosine from the end of epoch 1 to the end of the last.
  expected = [PEAK * 0.5 * (1 + math.cos(math.pi * (k - 1) / (epochs - 1)))
              for k in range(1, epochs + 1)]
  assert rates == pytest.approx(expected, abs=1e-7)
  assert rates[-1] == pytest.approx(0.0, abs=1e-9)
