"""What the docs promise about whole runs: the same --seed gives the same test accuracy, a run
with the same config executes nothing again (once the first run's model is the baseline), and data that fails validation stops a real run
before Transform with one line naming the problem."""
import dataclasses
import json

import pytest

from base import constants
from base.configs import DataConfig
from components.example_gen import executor as example_gen_executor
from pipeline import cli
from pipeline.pipeline import create_pipeline
from tests import conftest, e2e

pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def second_run(pipeline_run, cifar_archive, tmp_path_factory):
  """The session's run again, from scratch in its own output folder and metadata."""
  config, sizes = e2e.run_pipeline(
      conftest.short_run_config(cifar_archive[0], str(tmp_path_factory.mktemp('again'))))
  first = pipeline_run[0]
  assert config.replace(runner=first.runner) == first  # the same config but the folder
  return config, sizes


def _training_stats(config):
  model_dir, _ = e2e.model_dirs(config)
  with open(f'{model_dir}/{constants.TRAINING_STATS_FILE}') as f:
    return json.load(f)


def test_the_same_seed_gives_the_same_test_accuracy(pipeline_run, second_run):
  """Two runs with --seed 0 in separate folders, on one machine. Accuracies are counts of right
  answers over the same 60 test images, so they are compared exactly: any tolerance below 1/60
  is the same as none, and one above it would hide a changed prediction."""
  first, second = pipeline_run[0], second_run[0]
  assert first.runner.output_dir != second.runner.output_dir
  assert first.training.seed == second.training.seed == 0
  assert e2e.evaluated_accuracy(first) == e2e.evaluated_accuracy(second)
  # ... and the same validation accuracy after every epoch (counts over the same 20 images).
  assert _training_stats(first)['val_accuracy'] == _training_stats(second)['val_accuracy']


@pytest.fixture(scope='module')
def rerun_states(second_run):
  """{component id: execution state} of the first and of a second run with the same config."""
  config, _ = second_run
  first_states = e2e.execution_states(config)
  e2e.run_resolved(config)
  return first_states, e2e.execution_states(config)


# A Resolver node is never cached: TFX runs its query again in every run (it does no work).
RESOLVERS = {constants.BASELINE_RESOLVER}


def test_a_second_run_reuses_data_transform_and_training(rerun_states):
  first, second = rerun_states
  assert set(second) == set(first)  # the same components, read from a new pipeline run
  assert {constants.EXAMPLE_GEN, constants.TRANSFORM, constants.TRAINER} <= set(second)
  upstream_of_evaluation = set(second) - RESOLVERS - {constants.EVALUATOR, constants.PUSHER}
  assert {n: s for n, s in second.items() if n in upstream_of_evaluation and s != 'CACHED'} == {}


def test_only_the_evaluation_reruns_once_against_the_new_baseline(rerun_states, second_run):
  """The first run had no blessed model to compare with; in the second, the first run's own model
  is the baseline (a new Evaluator input), so the Evaluator and the Pusher run again and nothing
  else does. From then on the inputs stay the same: a third run executes no component."""
  _, second = rerun_states
  assert {n for n, s in second.items() if n not in RESOLVERS and s != 'CACHED'} == {
      constants.EVALUATOR, constants.PUSHER}
  config, _ = second_run
  e2e.run_resolved(config)
  third = e2e.execution_states(config)
  assert set(third) == set(second)
  assert {n: s for n, s in third.items() if n not in RESOLVERS and s != 'CACHED'} == {}


def test_data_that_fails_validation_stops_the_run_before_transform(cifar_archive, tmp_path,
                                                                   capsys):
  """The preflight passes for 5 classes; ExampleGen then writes a sixth (as a source that changed
  under the run, or a wrong class list, would): ExampleValidator flags the label out of range and
  the unknown class name, and the gate stops the run before Transform, with one line."""
  team = ('apple', 'bowl', 'cloud', 'crab', 'fox')
  config = conftest.short_run_config(cifar_archive[0], str(tmp_path / 'out'), epochs=1)
  config, _ = e2e.resolve(config.replace(data=dataclasses.replace(config.data, classes=team)))
  assert config.data.class_names == team
  wider, _ = e2e.resolve(config.replace(data=DataConfig(
      data=cifar_archive[0], trust_data=True, team_seed=config.data.team_seed,
      classes=team + ('girl',))))

  def main(argv):
    del argv
    pipeline = create_pipeline(config, e2e.connection(config))
    example_gen = next(c for c in pipeline.components if c.id == constants.EXAMPLE_GEN)
    example_gen.exec_properties.update({
        example_gen_executor.CLASS_NAMES: json.dumps(list(wider.data.class_names)),
        example_gen_executor.SOURCE_IDS: json.dumps(list(wider.data.fine_label_ids)),
        example_gen_executor.COARSE_NAMES: json.dumps(list(wider.data.coarse_names)),
    })
    import tfx.v1 as tfx  # pylint: disable=g-import-not-at-top
    tfx.orchestration.LocalDagRunner().run(pipeline)

  capsys.readouterr()
  with pytest.raises(SystemExit) as exited:
    cli.run_main(main, [])
  assert exited.value.code == 2
  errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1, errors
  assert errors[0].startswith('error: data validation found '), errors[0]
  assert f'{constants.TRAIN_SPLIT}: {constants.LABEL_KEY}: ' in errors[0]
  assert f'{constants.TRAIN_SPLIT}: {constants.LABEL_NAME_KEY}: ' in errors[0]

  states = e2e.execution_states(config)
  assert states[constants.EXAMPLE_VALIDATOR] == 'COMPLETE'
  assert states[constants.VALIDATION_GATE] == 'FAILED'
  assert constants.TRANSFORM not in states and constants.TRAINER not in states, states
  store = e2e.store_for(config)
  assert not store.get_artifacts_by_type('TransformGraph')
  assert not store.get_artifacts_by_type('Model')
