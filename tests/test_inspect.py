"""`python -m pipeline.inspect` on the shared pipeline run: what it reads back from ML Metadata
agrees with the config, the Model's training_stats.json and the evaluation's own numbers."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pipeline import analysis
from base import constants
from pipeline import inspect as pinspect
from pipeline import runs
from pipeline.evaluation import ACCURACY, TOP_K_ACCURACY, macro_precision_recall
from tests import e2e

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINER = 'Trainer'  # the component id, as it appears in artifact URIs


def run_inspect(*args):
  return subprocess.run([sys.executable, '-m', 'pipeline.inspect', *args], capture_output=True,
                        text=True, cwd=ROOT, timeout=300,
                        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})


@pytest.fixture(scope='module')
def latest_json(pipeline_run):
  """`--run latest --json` through the real command line, parsed."""
  config, _ = pipeline_run
  result = run_inspect('--output-dir', config.runner.output_dir, '--run', 'latest', '--json')
  assert result.returncode == 0, result.stderr
  return json.loads(result.stdout)


def test_lists_the_run_with_its_state_and_config(pipeline_run):
  config, _ = pipeline_run
  run = runs.list_runs(runs.open_store(config.runner.output_dir))[-1]
  assert run['state'] == 'COMPLETE' and run['failed'] == []
  assert run['pipeline'] == config.runner.pipeline_name
  assert run['config'] == {
      'model': 'simple_cnn', 'epochs': 2, 'time_budget': 15.0,
      'num_classes': len(config.data.class_names), 'source': config.data.source, 'source_path': config.data.source_path}
  components = {e['component']: e['state'] for e in run['executions']}
  for component in ('Cifar100ExampleGen', 'Transform', 'Trainer', 'Evaluator', 'Pusher'):
    assert components[component] in ('COMPLETE', 'CACHED')
  assert run['num_executions'] == len(run['executions']) == len(components)

  text = run_inspect('--output-dir', config.runner.output_dir)
  assert text.returncode == 0, text.stderr
  assert run['run_id'] in text.stdout and 'COMPLETE' in text.stdout
  # The session's run keeps the default 15-minute budget, with at most 2 epochs.
  assert 'simple_cnn, 15-minute budget of at most 2 epochs, 20 classes' in text.stdout
  assert 'TEST ACC' in text.stdout and f'{run["test_accuracy"]:.4f}' in text.stdout


def test_overview_has_the_evaluations_accuracy_and_the_trainers_tag(pipeline_run, latest_json):
  """list_runs reads the overall accuracy from the metrics files without TFMA: the same numbers
  as TFMA's own reader gives run_details."""
  config, _ = pipeline_run
  run = runs.list_runs(runs.open_store(config.runner.output_dir))[-1]
  overall = latest_json['evaluation']['overall']
  assert run['test_accuracy'] == pytest.approx(overall[ACCURACY], abs=1e-9)
  assert run['test_top_k_accuracy'] == pytest.approx(overall[TOP_K_ACCURACY], abs=1e-9)
  assert run['top_k'] == latest_json['evaluation']['top_k']
  assert run['evaluation_uri'] == latest_json['evaluation']['uri']
  assert (run['study'], run['variant'], run['seed']) == ('', '', config.training.seed)
  assert run['model_uri'] == latest_json['training']['model_uri']
  with open(run['training_stats_path']) as f:
    assert json.load(f) == latest_json['training']['stats']
  assert latest_json['run']['test_accuracy'] == run['test_accuracy']


def test_run_has_the_team_classes(pipeline_run, latest_json):
  config, _ = pipeline_run
  classes = latest_json['classes']
  assert [c['name'] for c in classes] == list(config.data.class_names)
  assert [c['id'] for c in classes] == list(config.data.fine_label_ids)
  assert [c['superclass'] for c in classes] == list(config.data.coarse_names)
  assert [c['label'] for c in classes] == list(range(len(classes)))


def test_training_figures_are_the_models_training_stats(pipeline_run, latest_json):
  config, _ = pipeline_run
  model = e2e.latest_artifact(config, runs.MODEL, TRAINER)
  with open(os.path.join(model.uri, constants.TRAINING_STATS_FILE)) as f:
    assert latest_json['training']['stats'] == json.load(f)
  assert latest_json['training']['model_uri'] == model.uri
  assert latest_json['training']['config']['model'] == 'simple_cnn'


def test_metrics_agree_with_each_other(pipeline_run, latest_json):
  config, sizes = pipeline_run
  evaluation = latest_json['evaluation']
  overall = evaluation['overall']
  assert overall[analysis.EXAMPLE_COUNT] == sizes['test']
  per_class = evaluation['per_class']
  assert [r['class'] for r in per_class] == list(config.data.class_names)
  # Weighted by example count, the per-class accuracies give the overall accuracy...
  counts = np.array([r[analysis.EXAMPLE_COUNT] for r in per_class])
  accuracies = np.array([r[ACCURACY] for r in per_class])
  assert counts.sum() == sizes['test']
  assert (accuracies * counts).sum() / counts.sum() == pytest.approx(overall[ACCURACY], abs=1e-6)
  # ...and each is its confusion-matrix row's diagonal share.
  matrix = np.array(evaluation['confusion_matrix']['matrix'])
  assert evaluation['confusion_matrix']['classes'] == list(config.data.class_names)
  np.testing.assert_array_equal(matrix.sum(axis=1), counts)
  np.testing.assert_allclose(np.diag(matrix) / matrix.sum(axis=1), accuracies, atol=1e-6)
  precision, recall = macro_precision_recall(matrix)
  assert evaluation['macro_precision'] == pytest.approx(precision)
  assert evaluation['macro_recall'] == pytest.approx(recall)
  assert 0 <= overall[ACCURACY] <= evaluation['overall']['sparse_top_k_categorical_accuracy'] <= 1
  assert evaluation['validation_ok'] is True and evaluation['baseline_model'] is None


def test_blessed_and_pushed(pipeline_run, latest_json):
  config, _ = pipeline_run
  deployment = latest_json['deployment']
  assert deployment['blessed'] is True and deployment['pushed'] is True
  destination = deployment['pushed_destination']
  assert destination.startswith(config.runner.serving_model_dir) and os.path.isdir(destination)
  assert latest_json['absent'] == {}


def test_executions_and_artifacts_of_the_run(pipeline_run, latest_json):
  config, _ = pipeline_run
  by_component = {e['component']: e for e in latest_json['executions']}
  artifacts = {a['id']: a for a in latest_json['artifacts']}
  trainer = by_component['Trainer']
  [model_id] = trainer['outputs']['model']
  assert artifacts[model_id]['uri'] == e2e.latest_artifact(config, runs.MODEL, TRAINER).uri
  assert artifacts[model_id]['producer'] == 'Trainer.model'
  assert by_component['Evaluator']['inputs']['model'] == [model_id]
  # ExampleGen was cached: the session's data run (conftest's `data_run`) wrote the examples.
  examples = e2e.latest_artifact(config, 'Examples', e2e.EXAMPLE_GEN)
  assert by_component[e2e.EXAMPLE_GEN]['state'] == 'CACHED'
  written_by = artifacts[examples.id]['written_by_run']
  assert written_by != latest_json['run']['run_id']
  [writer] = [r for r in runs.list_runs(runs.open_store(config.runner.output_dir))
              if r['run_id'] == written_by]
  assert {e['component']: e['state'] for e in writer['executions']}[e2e.EXAMPLE_GEN] == 'COMPLETE'


def test_text_of_one_run(pipeline_run):
  config, _ = pipeline_run
  details = runs.run_details(runs.open_store(config.runner.output_dir), runs.LATEST)
  text = pinspect.format_run(details)
  for name in config.data.class_names:
    assert f' {name} ' in text
  assert 'ms/step' in text and 'macro precision' in text
  assert f'pushed to {details["deployment"]["pushed_destination"]}' in text


def test_lineage_of_the_model_reaches_the_examples(pipeline_run):
  config, _ = pipeline_run
  store = runs.open_store(config.runner.output_dir)
  model = runs.latest_artifact(store, runs.MODEL)
  rows = runs.lineage_rows(runs.lineage(store, model['id']))
  producers = [(r['type'], r['producer']) for r in rows]
  for link in (('Model', 'Trainer'), ('TransformGraph', 'Transform'),
               ('Examples', e2e.EXAMPLE_GEN)):
    assert link in producers
  # Transform materialises nothing: the Trainer reads ExampleGen's examples.
  assert ('Examples', 'Transform') not in producers
  examples = e2e.latest_artifact(config, 'Examples', e2e.EXAMPLE_GEN)
  assert examples.id in [r['id'] for r in rows if r['producer'] == e2e.EXAMPLE_GEN]


def _assert_one_line_error(result, message):
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0], result.stderr


def test_errors_are_one_line(pipeline_run, tmp_path):
  config, _ = pipeline_run
  _assert_one_line_error(run_inspect('--output-dir', str(tmp_path)), 'no ML Metadata at')
  _assert_one_line_error(
      run_inspect('--output-dir', config.runner.output_dir, '--run', 'no-such-run'),
      "no run 'no-such-run'")
