"""`pipeline.analysis` on hand-made TFMA results, and the run records of `pipeline.runs` (with
their rendering by `pipeline.inspect`) on a small ML Metadata store written here (no pipeline run):
run states, cached runs, absent outputs, study tags, test accuracy from evaluation files written in
TFMA's format, formatting, errors."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline import analysis, cli
from base import constants
from pipeline import inspect as pinspect
from pipeline import runs
from base.configs import RunnerConfig
from base.errors import UserError
from pipeline.evaluation import ACCURACY, TOP_K_ACCURACY, macro_precision_recall

# ------------------------------------------------------------------ analysis ---------------

CLASSES = ('apple', 'bee', 'cat')
SUPERCLASSES = ('fruit', 'insects', 'pets')
# [true, predicted]: apple 3/4 right, bee 1/3, cat 3/3; 7 of 10 overall.
MATRIX = np.array([[3, 1, 0], [0, 1, 2], [0, 0, 3]], dtype=float)


def _metrics(accuracy, count, top_k=1.0, **extra):
  return {'': {'': {ACCURACY: {'doubleValue': accuracy}, TOP_K_ACCURACY: {'doubleValue': top_k},
                    analysis.EXAMPLE_COUNT: {'doubleValue': count}, **extra}}}


def _slicing_metrics(**overall_extra):
  return [
      ((('label_name', b'bee'),), _metrics(1 / 3, 3)),  # TFMA may keep string slices as bytes
      ((), _metrics(0.7, 10, top_k=0.9, **overall_extra)),
      ((('coarse_label', 'pets'),), _metrics(1.0, 3)),
      ((('label_name', 'apple'),), _metrics(0.75, 4)),
      ((('label_name', 'cat'),), _metrics(1.0, 3)),
      ((('coarse_label', 'fruit'),), _metrics(0.75, 4)),
      ((('coarse_label', 'insects'),), _metrics(1 / 3, 3)),
  ]


def _plots():
  # TFMA lists only non-zero cells and drops fields equal to 0 (class id 0, threshold 0).
  entries = [{'numWeightedExamples': 3.0}, {'predictedClassId': 1, 'numWeightedExamples': 1.0},
             {'actualClassId': 1, 'predictedClassId': 1, 'numWeightedExamples': 1.0},
             {'actualClassId': 1, 'predictedClassId': 2, 'numWeightedExamples': 2.0},
             {'actualClassId': 2, 'predictedClassId': 2, 'numWeightedExamples': 3.0}]
  above_half = [{'actualClassId': 2, 'predictedClassId': -1, 'numWeightedExamples': 10.0}]
  plot = {analysis.CONFUSION_PLOT_KEY: {'matrices': [
      {'threshold': 0.5, 'entries': above_half}, {'entries': entries}]}}
  return [((('label_name', 'cat'),), {'': {'': {analysis.CONFUSION_PLOT_KEY: {'matrices': []}}}}),
          ((), {'': {'': plot}})]


def test_metric_values_in_each_tfma_form():
  assert analysis.metric_value({'doubleValue': 0.5}) == 0.5
  assert analysis.metric_value({'boundedValue': {'value': 0.25, 'lowerBound': 0.2}}) == 0.25
  assert analysis.metric_value(3) == 3.0
  assert analysis.metric_value({'debugMessage': 'failed'}) is None
  assert analysis.metric_value(None) is None


def test_slice_rows_overall_first_then_sorted():
  rows = analysis.slice_metric_rows(_slicing_metrics())
  assert [(r['slice'], r['value']) for r in rows] == [
      (analysis.OVERALL, ''), ('coarse_label', 'fruit'), ('coarse_label', 'insects'),
      ('coarse_label', 'pets'), ('label_name', 'apple'), ('label_name', 'bee'),
      ('label_name', 'cat')]
  assert rows[0][ACCURACY] == 0.7 and rows[0][analysis.EXAMPLE_COUNT] == 10
  frame = analysis.slice_metrics_frame(_slicing_metrics())
  assert list(frame.columns) == ['slice', 'value', *analysis.METRICS] and len(frame) == 7


def test_per_class_rows_follow_the_class_order():
  rows = analysis.slice_metric_rows(_slicing_metrics())
  per_class = analysis.per_class_rows(rows, ('cat', 'apple', 'dog'))
  assert [(r['label'], r['class'], r[ACCURACY]) for r in per_class] == [
      (0, 'cat', 1.0), (1, 'apple', 0.75), (2, 'dog', None)]
  assert per_class[2][analysis.EXAMPLE_COUNT] == 0  # no test example: no slice


def test_confusion_matrix_from_the_overall_plot():
  np.testing.assert_array_equal(analysis.confusion_matrix(_plots(), 3), MATRIX)
  assert analysis.confusion_matrix([], 3) is None
  with pytest.raises(ValueError, match='outside 2 classes'):
    analysis.confusion_matrix(_plots(), 2)


def test_summary_is_consistent_with_the_matrix():
  summary = analysis.evaluation_summary(_slicing_metrics(), _plots(), CLASSES, SUPERCLASSES)
  assert summary['overall'] == {ACCURACY: 0.7, TOP_K_ACCURACY: 0.9, analysis.EXAMPLE_COUNT: 10}
  per_class = summary['per_class']
  matrix = np.array(summary['confusion_matrix']['matrix'])
  assert summary['confusion_matrix']['classes'] == list(CLASSES)
  np.testing.assert_allclose([r[ACCURACY] for r in per_class], np.diag(matrix) / matrix.sum(1))
  assert [r[analysis.EXAMPLE_COUNT] for r in per_class] == list(matrix.sum(1))
  assert analysis.weighted_mean_accuracy(per_class) == pytest.approx(0.7)
  assert (summary['macro_precision'], summary['macro_recall']) == macro_precision_recall(MATRIX)
  assert summary['macro_precision'] == pytest.approx((1 + 0.5 + 0.6) / 3)
  assert [r['class'] for r in summary['per_superclass']] == list(SUPERCLASSES)
  assert summary['baseline_diff'] is None


def test_summary_without_a_confusion_plot_or_with_a_baseline():
  diff = {ACCURACY + analysis.DIFF_SUFFIX: {'doubleValue': -0.1}}
  summary = analysis.evaluation_summary(_slicing_metrics(**diff), [], CLASSES)
  assert summary['confusion_matrix'] is None and summary['macro_precision'] is None
  assert summary['baseline_diff'] == {ACCURACY: -0.1, TOP_K_ACCURACY: None}
  # Superclasses come from the slices when the caller does not know them.
  assert [r['class'] for r in summary['per_superclass']] == list(SUPERCLASSES)


def test_names_match_tfma():
  import tensorflow_model_analysis as tfma
  from tensorflow_model_analysis.proto import metrics_for_slice_pb2
  assert analysis.EXAMPLE_COUNT == tfma.metrics.ExampleCount().name
  field = metrics_for_slice_pb2.PlotData.DESCRIPTOR.fields_by_name[
      'multi_class_confusion_matrix_at_thresholds']
  assert analysis.CONFUSION_PLOT_KEY == field.json_name


def test_validation_failures():
  from tensorflow_model_analysis.proto import validation_result_pb2
  result = validation_result_pb2.ValidationResult(validation_ok=False)
  per_slice = result.metric_validations_per_slice.add()
  per_slice.slice_key.single_slice_keys.add(column='label_name', bytes_value=b'bee')
  failure = per_slice.failures.add()
  failure.metric_key.name = ACCURACY
  failure.metric_key.is_diff = True
  failure.metric_value.double_value.value = -0.5
  overall = result.metric_validations_per_slice.add()
  overall.slice_key.SetInParent()
  overall.failures.add().metric_key.name = ACCURACY
  assert analysis.validation_failures(result) == [
      {'slice': analysis.OVERALL, 'value': '', 'metric': ACCURACY, 'metric_value': None},
      {'slice': 'label_name', 'value': 'bee', 'metric': ACCURACY + '_diff',
       'metric_value': -0.5}]
  assert analysis.validation_failures(validation_result_pb2.ValidationResult()) == []


def test_charts_name_the_classes():
  per_class = analysis.per_class_rows(analysis.slice_metric_rows(_slicing_metrics()), CLASSES)
  ax = analysis.plot_per_class_accuracy(Figure().subplots(), per_class, 0.7)
  assert [t.get_text() for t in ax.get_xticklabels()] == list(CLASSES)
  assert [p.get_height() for p in ax.patches] == pytest.approx([0.75, 1 / 3, 1.0])

  ax = analysis.plot_confusion_matrix(Figure().subplots(), MATRIX, CLASSES)
  assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASSES)
  np.testing.assert_array_equal(ax.images[0].get_array(), MATRIX)
  ax = analysis.plot_confusion_matrix(Figure().subplots(), MATRIX, CLASSES, normalize=True)
  np.testing.assert_allclose(np.asarray(ax.images[0].get_array()).sum(axis=1), 1.0)


# ------------------------------------------------------------------ inspect: pure parts ----

def _execution(component, state, cls=None):
  return {'component': component, 'class': cls or component, 'state': state}


def test_run_state():
  complete = [_execution('Cifar100ExampleGen', 'COMPLETE'), _execution('Trainer', 'COMPLETE')]
  cached = [_execution('Cifar100ExampleGen', 'CACHED'),
            _execution('latest_blessed_model_resolver', 'COMPLETE', 'Resolver')]
  assert runs.run_state(complete) == 'COMPLETE'
  assert runs.run_state(cached) == 'CACHED'  # the resolver always completes
  assert runs.run_state(cached + [_execution('Evaluator', 'FAILED')]) == 'FAILED'
  assert runs.run_state(complete + [_execution('Evaluator', 'RUNNING')]) == 'RUNNING'
  assert runs.run_state(cached + [_execution('Trainer', 'COMPLETE')]) == 'COMPLETE'
  assert runs.run_state([]) == 'EMPTY'


def test_durations_and_tables():
  assert [pinspect.format_duration(s) for s in (0.25, 4.26, 42, 185, 7440, None)] == [
      '250 ms', '4.3 s', '42 s', '3 min 05 s', '2 h 04 min', '-']
  assert pinspect.format_table(('A', 'LONG'), [('xyz', None), (1, 2)]).splitlines() == [
      '  A    LONG', '  xyz  -', '  1    2']


def _run(run_id, state, failed=(), model='resnet', epochs=12, study='', variant='',
         test_accuracy=None, failure_reason=None, time_budget=None):
  return {'run_id': run_id, 'pipeline': 'cifar100', 'started': '2026-01-02T03:04:05+01:00',
          'duration_sec': 75.0, 'state': state, 'failed': list(failed),
          'failure_reason': failure_reason, 'study': study, 'variant': variant, 'seed': 4,
          'test_accuracy': test_accuracy, 'test_top_k_accuracy': None, 'top_k': 5,
          'model_uri': '/out/model/9', 'num_executions': 11,
          'executions_by_state': {'CACHED': 8, 'COMPLETE': 3},
          'config': {'model': model, 'epochs': epochs, 'time_budget': time_budget,
                     'num_classes': 20, 'source': 'cifar100_archive',
                     'source_path': '/data/c.tar.gz'}}


def _cells(line):
  """A table row's cells: columns are two or more spaces apart, cells have single spaces."""
  return re.split(r' {2,}', line.strip())


def test_format_runs():
  text = pinspect.format_runs([
      _run('run-1', 'FAILED', ['Evaluator'], failure_reason='ValueError: no test examples'),
      _run('run-2', 'COMPLETE', study='augmentation', variant='augment=strong',
           test_accuracy=0.61234)], '/out/metadata.sqlite')
  lines = text.splitlines()
  assert lines[0].startswith('2 pipeline runs in /out/metadata.sqlite (oldest first')
  assert lines[1].split() == ['RUN', 'ID', 'PIPELINE', 'STARTED', 'TOOK', 'STATE', 'TEST', 'ACC',
                              'STUDY', 'VARIANT', 'EXECUTIONS', 'CONFIG']
  assert 'run-1' in lines[2] and 'FAILED at Evaluator' in lines[2]
  assert _cells(lines[2])[4:8] == ['FAILED at Evaluator', '-', '-', '-']  # a plain run
  assert 'run-2' in lines[3] and '2026-01-02 03:04:05' in lines[3] and '1 min 15 s' in lines[3]
  assert _cells(lines[3])[4:8] == ['COMPLETE', '0.6123', 'augmentation', 'augment=strong']
  assert '11 (8 cached)' in lines[3] and 'resnet, 12 epochs, 20 classes, cifar100_archive' in text
  assert '  run-1 failed at Evaluator: ValueError: no test examples' in lines
  assert '--run latest' in text
  assert pinspect.format_runs([], '/out') == 'No pipeline runs in /out.'
  # With a time budget, `epochs` is only the most the budget may choose: the line says so.
  budgeted = pinspect.format_runs([_run('run-3', 'COMPLETE', epochs=45, time_budget=15.0)])
  assert 'resnet, 15-minute budget of at most 45 epochs, 20 classes' in budgeted
  [row] = runs.run_rows([_run('run-1', 'FAILED', ['Evaluator'], study='s', variant='v')])
  assert (row['failed'], row['cached'], row['model']) == ('Evaluator', 8, 'resnet')
  assert (row['study'], row['variant'], row['seed'], row['test_accuracy']) == ('s', 'v', 4, None)


def test_format_run_with_every_section():
  summary = analysis.evaluation_summary(_slicing_metrics(), _plots(), CLASSES, SUPERCLASSES)
  details = {
      'run': _run('run-2', 'COMPLETE'),
      'classes': [{'label': i, 'name': n, 'id': 10 + i, 'superclass': s}
                  for i, (n, s) in enumerate(zip(CLASSES, SUPERCLASSES))],
      'training': {'model_uri': '/out/model/9', 'model_run_uri': None,
                   'config': {'optimizer': 'sgd'},
                   'stats': {'model': 'resnet', 'epochs': 12, 'ms_per_step': 123.45,
                             'examples_per_sec': 1037.2, 'total_training_time_sec': 3600.0,
                             'total_params': 1234567, 'trainable_params': 1200000,
                             'device_type': 'CPU', 'best_val_accuracy': 0.5, 'best_epoch': 11}},
      'evaluation': {'uri': '/out/eval/10', 'top_k': 3, 'validation_ok': False,
                     'validation_failures': [{'slice': 'label_name', 'value': 'bee',
                                              'metric': ACCURACY + '_diff', 'metric_value': -0.5}],
                     'baseline_model': '/out/model/1', **summary},
      'deployment': {'blessed': False, 'blessing_uri': '/out/blessing/10', 'pushed': False,
                     'pushed_destination': None, 'pusher': 'COMPLETE'},
      'absent': {}, 'executions': [], 'artifacts': [],
  }
  text = pinspect.format_run(details)
  assert 'Run run-2 of pipeline cifar100: COMPLETE' in text
  assert '  seed 4; test accuracy -, top-5 accuracy -' in text
  assert '123.5 ms/step, 1,037 examples/s' in text and '1,234,567' in text
  assert 'best val accuracy 0.5000 at epoch 11' in text and '1 h 00 min' in text
  assert 'accuracy 0.7000, top-3 accuracy 0.9000' in text
  assert 'missed 1 threshold: label_name=bee' in text
  assert 'NOT blessed; not pushed' in text
  bee = next(line for line in text.splitlines() if line.split()[:1] == ['bee'])
  assert bee.split() == ['bee', '0.3333', '1.0000', '3']


# ------------------------------------------------------------------ inspect: an MLMD store ---

class _Store:
  """Writes runs into ML Metadata the way TFX 1.16 does: pipeline/run/node contexts, executions
  with exec properties, INPUT/OUTPUT events; a cached execution points at earlier outputs."""

  def __init__(self, path):
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    self.store = metadata_store.MetadataStore(config)
    self.context_types = {
        name: self.store.put_context_type(metadata_store_pb2.ContextType(name=name))
        for name in ('pipeline', 'pipeline_run', 'node')}
    self.pipeline = self._context('pipeline', 'demo')
    self.nodes = {}

  def _context(self, type_name, name):
    existing = self.store.get_context_by_type_and_name(type_name, name)
    if existing:
      return existing.id
    [context_id] = self.store.put_contexts([metadata_store_pb2.Context(
        type_id=self.context_types[type_name], name=name)])
    return context_id

  def run(self, name):
    run = self._context('pipeline_run', name)
    self.store.put_parent_contexts([metadata_store_pb2.ParentContext(
        child_id=run, parent_id=self.pipeline)])
    return run

  def execute(self, run, component, type_name, state, properties=None, inputs=None, outputs=None):
    """inputs: {key: [artifact id]}; outputs: {key: artifact id, or (type name, uri[, int custom
    properties]) of a new artifact} -> {key: artifact id}."""
    if component not in self.nodes:
      self.nodes[component] = self._context('node', f'demo.{component}')
    execution = metadata_store_pb2.Execution(
        type_id=self.store.put_execution_type(metadata_store_pb2.ExecutionType(name=type_name)),
        last_known_state=state)
    for key, value in (properties or {}).items():
      execution.custom_properties[key].string_value = (
          value if isinstance(value, str) else json.dumps(value))
    pairs = []
    for key, ids in (inputs or {}).items():
      for artifact in self.store.get_artifacts_by_id(ids):
        pairs.append((artifact, self._event(metadata_store_pb2.Event.INPUT, key)))
    for key, value in (outputs or {}).items():
      if isinstance(value, int):
        [artifact] = self.store.get_artifacts_by_id([value])
      else:
        artifact = metadata_store_pb2.Artifact(
            type_id=self.store.put_artifact_type(metadata_store_pb2.ArtifactType(name=value[0])),
            uri=value[1], state=metadata_store_pb2.Artifact.LIVE)
        for name, number in (value[2] if len(value) > 2 else {}).items():
          artifact.custom_properties[name].int_value = number
      pairs.append((artifact, self._event(metadata_store_pb2.Event.OUTPUT, key)))
    contexts = self.store.get_contexts_by_id([self.pipeline, run, self.nodes[component]])
    _, artifact_ids, _ = self.store.put_execution(execution, pairs, contexts)
    return dict(zip([key for key in (outputs or {})], artifact_ids[-len(outputs or {}):]))

  @staticmethod
  def _event(event_type, key):
    event = metadata_store_pb2.Event(type=event_type)
    event.path.steps.add().key = key
    event.path.steps.add().index = 0
    return event


EXAMPLE_GEN_TYPE = 'components.example_gen.component.Cifar100ExampleGen'
TRAINER_TYPE = 'tfx.components.trainer.component.Trainer'
EVALUATOR_TYPE = 'tfx.components.evaluator.component.Evaluator'
RESOLVER_TYPE = 'tfx.dsl.components.common.resolver.Resolver'
State = metadata_store_pb2.Execution.State
COMPLETE, CACHED, FAILED = State.COMPLETE, State.CACHED, State.FAILED
STATS = {'model': 'simple_cnn', 'epochs': 2, 'ms_per_step': 12.5, 'examples_per_sec': 2560.0}
# What pipeline.pipeline puts into the Trainer's custom_config for a run of a study.
STUDY_TAG = {constants.STUDY: {'study': 'augmentation', 'variant': 'augment=strong'}}
# What TFX records for an executor that reported a failure (an ExecutionResult as JSON).
EVALUATOR_FAILURE = {runs.EXECUTION_RESULT_PROPERTY: {
    'code': 2, 'resultMessage': 'Traceback (most recent call last):\n  File "executor.py", line 9'
                                '\nValueError: no test examples\n'}}


@pytest.fixture
def recorded(tmp_path):
  """Two runs in a fresh store: the first trains and fails at the Evaluator; the second reuses
  ExampleGen's and Trainer's outputs (cached) and never reaches the Evaluator."""
  output_dir = str(tmp_path)
  recorder = _Store(RunnerConfig(output_dir=output_dir).metadata_path)
  model_dir = tmp_path / 'pipeline_root' / 'Trainer' / 'model' / '2'
  model_dir.mkdir(parents=True)
  (model_dir / constants.TRAINING_STATS_FILE).write_text(json.dumps(STATS))
  example_gen_properties = {
      'class_names': list(CLASSES), 'source_ids': [0, 6, 3], 'coarse_names': list(SUPERCLASSES),
      'source': constants.SOURCE_CIFAR_ARCHIVE, 'source_path': '/data/cifar-100-python.tar.gz'}
  trainer_properties = {'custom_config': {'training': {'model': 'simple_cnn', 'epochs': 2,
                                                       'seed': 7},
                                          'class_names': list(CLASSES), **STUDY_TAG}}

  first = recorder.run('2026-01-01T10:00:00.000001')
  examples = recorder.execute(first, 'Cifar100ExampleGen', EXAMPLE_GEN_TYPE, COMPLETE,
                              example_gen_properties,
                              outputs={'examples': ('Examples', '/out/examples/1')})['examples']
  model = recorder.execute(first, 'Trainer', TRAINER_TYPE, COMPLETE, trainer_properties,
                           inputs={'examples': [examples]},
                           outputs={'model': ('Model', str(model_dir))})['model']
  recorder.execute(first, 'Evaluator', EVALUATOR_TYPE, FAILED, EVALUATOR_FAILURE,
                   inputs={'examples': [examples], 'model': [model]})

  second = recorder.run('2026-01-01T11:00:00.000002')
  recorder.execute(second, 'Cifar100ExampleGen', EXAMPLE_GEN_TYPE, CACHED, example_gen_properties,
                   outputs={'examples': examples})
  recorder.execute(second, 'latest_blessed_model_resolver', RESOLVER_TYPE, COMPLETE)
  recorder.execute(second, 'Trainer', TRAINER_TYPE, CACHED, trainer_properties,
                   inputs={'examples': [examples]}, outputs={'model': model})
  return output_dir, {'examples': examples, 'model': model}


def test_list_runs_from_metadata(recorded):
  output_dir, _ = recorded
  listed = runs.list_runs(runs.open_store(output_dir))
  assert [r['run_id'] for r in listed] == [
      '2026-01-01T10:00:00.000001', '2026-01-01T11:00:00.000002']
  first, second = listed
  assert (first['state'], first['failed'], first['num_executions']) == ('FAILED', ['Evaluator'], 3)
  assert second['state'] == 'CACHED'
  assert second['executions_by_state'] == {'CACHED': 2, 'COMPLETE': 1}
  assert second['pipeline'] == 'demo'
  assert second['config'] == {'model': 'simple_cnn', 'epochs': 2, 'time_budget': None,
                              'num_classes': 3,
                              'source': constants.SOURCE_CIFAR_ARCHIVE,
                              'source_path': '/data/cifar-100-python.tar.gz'}
  assert [e['component'] for e in second['executions']] == [
      'Cifar100ExampleGen', 'latest_blessed_model_resolver', 'Trainer']


def test_list_runs_reads_study_seed_model_and_failure(recorded, tmp_path):
  output_dir, _ = recorded
  first, second = runs.list_runs(runs.open_store(output_dir))
  assert (first['failed'], first['failure_reason']) == (['Evaluator'], 'ValueError: no test examples')
  model_dir = str(tmp_path / 'pipeline_root' / 'Trainer' / 'model' / '2')
  for run in (first, second):  # the second run's cached Trainer points at the first's model
    assert (run['study'], run['variant'], run['seed']) == ('augmentation', 'augment=strong', 7)
    assert run['model_uri'] == model_dir
    assert run['training_stats_path'] == os.path.join(model_dir, constants.TRAINING_STATS_FILE)
    assert run['test_accuracy'] is None and run['test_top_k_accuracy'] is None
  assert second['failure_reason'] is None
  assert first['training'] == {'model': 'simple_cnn', 'epochs': 2, 'seed': 7}
  details = runs.run_details(runs.open_store(output_dir), '2026-01-01T10', sections=())
  assert {k: v for k, v in details['run'].items()} == first
  text = pinspect.format_run(details)
  assert 'FAILED at Evaluator: ValueError: no test examples' in text
  assert 'study augmentation, variant augment=strong; seed 7; test accuracy -' in text


def _write_evaluation(uri, values):
  """A ModelEvaluation as TFMA 0.47 writes it, with a baseline: eval_config.json (the EvalRun) and
  metrics-00000-of-00001.tfrecord, MetricsForSlice records of a class slice and then the overall
  slice. values: {(model name, metric name, is_diff): value}, the same in both slices except
  that the class slice's are halved."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_model_analysis.proto import config_pb2, metrics_for_slice_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow_model_analysis.writers import eval_config_writer  # pylint: disable=g-import-not-at-top
  os.makedirs(uri)
  eval_config = config_pb2.EvalConfig(model_specs=[
      config_pb2.ModelSpec(name='candidate'), config_pb2.ModelSpec(name='baseline',
                                                                   is_baseline=True)])
  with open(os.path.join(uri, 'eval_config.json'), 'w') as f:
    f.write(eval_config_writer._serialize_eval_run(  # pylint: disable=protected-access
        eval_config, '/data/test', 'tfrecords', {'candidate': '/m/2', 'baseline': '/m/1'}))

  def record(slice_columns, scale):
    metrics = metrics_for_slice_pb2.MetricsForSlice()
    for column, value in slice_columns:
      metrics.slice_key.single_slice_keys.add(column=column, bytes_value=value)
    for (model, name, is_diff), value in values.items():
      entry = metrics.metric_keys_and_values.add()
      entry.key.name, entry.key.model_name, entry.key.is_diff = name, model, is_diff
      entry.value.double_value.value = value * scale
    return metrics.SerializeToString()

  with tf.io.TFRecordWriter(os.path.join(uri, 'metrics-00000-of-00001.tfrecord')) as writer:
    writer.write(record([(constants.LABEL_NAME_KEY, b'bee')], 0.5))
    writer.write(record([], 1.0))


def test_test_accuracy_from_the_evaluation_files(recorded, tmp_path, capsys):
  output_dir, ids = recorded
  evaluation_uri = str(tmp_path / 'pipeline_root' / 'Evaluator' / 'evaluation' / '6')
  _write_evaluation(evaluation_uri, {
      ('candidate', ACCURACY, False): 0.625, ('candidate', TOP_K_ACCURACY, False): 0.875,
      ('candidate', ACCURACY, True): 0.125, ('baseline', ACCURACY, False): 0.5,
      ('baseline', TOP_K_ACCURACY, False): 0.75, ('candidate', analysis.EXAMPLE_COUNT, False): 16})
  # TFMA itself reads the same overall numbers back from these files.
  overall = dict(analysis.load_eval_result(evaluation_uri).slicing_metrics)[()]['']['']
  assert (overall[ACCURACY]['doubleValue'], overall[TOP_K_ACCURACY]['doubleValue']) == (
      0.625, 0.875)
  recorder = _Store(RunnerConfig(output_dir=output_dir).metadata_path)
  run = recorder.run('2026-01-01T12:00:00.000003')
  plain = {'custom_config': {'training': {'model': 'simple_cnn', 'epochs': 2, 'seed': 3}}}
  model = recorder.execute(run, 'Trainer', TRAINER_TYPE, COMPLETE, plain,
                           inputs={'examples': [ids['examples']]},
                           outputs={'model': ('Model', str(tmp_path / 'model3'))})['model']
  recorder.execute(run, 'Evaluator', EVALUATOR_TYPE, COMPLETE,
                   inputs={'model': [model], 'baseline_model': [ids['model']]},
                   outputs={'evaluation': ('ModelEvaluation', evaluation_uri)})

  third = runs.list_runs(runs.open_store(output_dir))[-1]
  assert (third['state'], third['study'], third['variant'], third['seed']) == (
      'COMPLETE', '', '', 3)
  assert (third['test_accuracy'], third['test_top_k_accuracy']) == (0.625, 0.875)
  assert third['evaluation_uri'] == evaluation_uri and third['model_uri'] == str(tmp_path / 'model3')
  assert runs.overall_metrics(evaluation_uri) == {
      ACCURACY: 0.625, TOP_K_ACCURACY: 0.875, analysis.EXAMPLE_COUNT: 16}

  code, out, _ = _main(capsys, '--output-dir', output_dir)
  row = next(line for line in out.splitlines() if '2026-01-01T12:00:00.000003' in line)
  assert code == 0 and _cells(row)[4:8] == ['COMPLETE', '0.6250', '-', '-']
  row = next(line for line in out.splitlines() if '2026-01-01T10:00:00.000001' in line)
  assert _cells(row)[4:8] == ['FAILED at Evaluator', '-', 'augmentation', 'augment=strong']

  # The overview reads these numbers without loading TensorFlow or TFMA.
  probe = ('import sys; from pipeline import runs; '
           f'r = runs.list_runs(runs.open_store({output_dir!r}))[-1]; '
           "print(r['test_accuracy'], sorted(m for m in ('tensorflow', 'tensorflow_model_analysis',"
           " 'apache_beam') if m in sys.modules))")
  result = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          check=True)
  assert result.stdout.split('\n')[0] == '0.625 []'


def test_an_unreadable_metrics_file_leaves_the_accuracy_out(tmp_path):
  (tmp_path / 'metrics-00000-of-00001.tfrecord').write_bytes(b'\x40' + b'\x00' * 11 + b'short')
  with pytest.raises(ValueError, match='cut-off TFRecord'):
    runs.overall_metrics(str(tmp_path))
  with pytest.raises(OSError):
    runs.overall_metrics(str(tmp_path / 'deleted'))


def test_details_of_a_cached_run_without_evaluation(recorded):
  output_dir, ids = recorded
  store = runs.open_store(output_dir)
  details = runs.run_details(store, '2026-01-01T11')  # a unique prefix
  assert details['run']['run_id'] == '2026-01-01T11:00:00.000002'
  assert [(c['name'], c['id'], c['superclass']) for c in details['classes']] == list(
      zip(CLASSES, [0, 6, 3], SUPERCLASSES))
  assert details['training']['stats'] == STATS
  assert details['evaluation'] is None and details['deployment'] is None
  assert details['absent'] == {'evaluation': 'Evaluator did not run in this run',
                               'deployment': 'Evaluator did not run in this run'}
  artifacts = {a['id']: a for a in details['artifacts']}
  assert artifacts[ids['model']]['producer'] == 'Trainer.model'
  assert artifacts[ids['model']]['written_by_run'] == '2026-01-01T10:00:00.000001'
  trainer = next(e for e in details['executions'] if e['component'] == 'Trainer')
  assert trainer['inputs'] == {'examples': [ids['examples']]}
  assert trainer['outputs'] == {'model': [ids['model']]}
  text = pinspect.format_run(details)
  assert 'Evaluation: absent (Evaluator did not run in this run)' in text
  assert 'cached, from run 2026-01-01T10:00:00.000001' in text
  json.loads(pinspect.to_json(details))


def test_details_of_a_run_that_failed_at_the_evaluator(recorded, tmp_path):
  output_dir, _ = recorded
  store = runs.open_store(output_dir)
  details = runs.run_details(store, '2026-01-01T10:00:00.000001')
  assert details['run']['state'] == 'FAILED'
  assert details['absent']['evaluation'] == 'Evaluator FAILED in this run'
  assert details['training']['stats'] == STATS
  # A model directory that disappeared: absent, with the reason, never a traceback.
  os.remove(tmp_path / 'pipeline_root/Trainer/model/2' / constants.TRAINING_STATS_FILE)
  details = runs.run_details(store, 'latest', sections=('training',))
  assert details['training'] is None and 'No such file' in details['absent']['training']
  assert set(details) == {'run', 'training', 'absent', 'executions', 'artifacts'}


def test_an_unreadable_evaluation_is_absent(recorded, tmp_path):
  output_dir, ids = recorded
  recorder = _Store(RunnerConfig(output_dir=output_dir).metadata_path)
  run = recorder.run('2026-01-01T12:00:00.000003')
  recorder.execute(run, 'Evaluator', EVALUATOR_TYPE, COMPLETE,
                   inputs={'model': [ids['model']], 'examples': [ids['examples']]},
                   outputs={'evaluation': ('ModelEvaluation', str(tmp_path / 'deleted')),
                            'blessing': ('ModelBlessing', str(tmp_path / 'b'), {'blessed': 1})})
  details = runs.run_details(runs.open_store(output_dir), runs.LATEST)
  assert details['evaluation'] is None
  assert 'deleted: unreadable evaluation' in details['absent']['evaluation']
  assert details['deployment']['blessed'] is True and details['deployment']['pushed'] is None
  assert 'not pushed (Pusher did not run)' in pinspect.format_run(details)


def test_lineage_walks_back_to_the_first_writer(recorded):
  output_dir, ids = recorded
  store = runs.open_store(output_dir)
  tree = runs.lineage(store, ids['model'])
  rows = runs.lineage_rows(tree)
  assert [(r['depth'], r['via'], r['type'], r['producer'], r['run']) for r in rows] == [
      (0, '', 'Model', 'Trainer', '2026-01-01T10:00:00.000001'),
      (1, 'examples', 'Examples', 'Cifar100ExampleGen', '2026-01-01T10:00:00.000001')]
  assert runs.latest_artifact(store, runs.MODEL)['id'] == ids['model']
  assert runs.latest_artifact(store, runs.MODEL, 'Trainer')['id'] == ids['model']
  assert runs.latest_artifact(store, 'Examples', 'Cifar100ExampleGen') == {
      'id': ids['examples'], 'type': 'Examples', 'uri': '/out/examples/1'}
  assert runs.latest_artifact(store, 'Examples', 'Trainer') is None  # an input, not an output
  assert runs.latest_artifact(store, 'PushedModel') is None
  assert '<- Cifar100ExampleGen (execution 1, COMPLETE' in pinspect.format_lineage(tree)


def test_unknown_and_ambiguous_runs(recorded):
  store = runs.open_store(recorded[0])
  with pytest.raises(UserError, match="no run 'nope' in ML Metadata"):
    runs.find_run(store, 'nope')
  with pytest.raises(UserError, match='ambiguous: 2 runs'):
    runs.find_run(store, '2026-01-01T1')


def _main(capsys, *argv):
  """Runs the command line in-process: (exit code, stdout, stderr)."""
  try:
    cli.run_main(pinspect.main, list(argv))
    code = 0
  except SystemExit as e:
    code = e.code
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def test_command_line(recorded, capsys, tmp_path):
  output_dir, _ = recorded
  code, out, _ = _main(capsys, '--output-dir', output_dir, '--json')
  assert code == 0 and [r['state'] for r in json.loads(out)['runs']] == ['FAILED', 'CACHED']
  code, out, _ = _main(capsys, '--output-dir', output_dir)
  assert code == 0 and 'FAILED at Evaluator' in out
  code, _, err = _main(capsys, '--output-dir', output_dir, '--run', 'nope')
  assert code == 2 and err.count('\n') == 1 and err.startswith("error: no run 'nope'")
  code, _, err = _main(capsys, '--output-dir', str(tmp_path / 'missing'))
  assert code == 2 and err.startswith('error: no ML Metadata at ') and err.count('\n') == 1
  not_mlmd = tmp_path / 'garbage'
  not_mlmd.mkdir()
  (not_mlmd / 'metadata.sqlite').write_text('not a database')
  code, _, err = _main(capsys, '--output-dir', str(not_mlmd))
  assert code == 2 and 'not a readable ML Metadata database (file is not a database)' in err
