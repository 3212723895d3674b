"""Compiling for Vertex AI with Dataflow and GPUs (offline), and the checks before compiling."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

import kubeflow_runner
from base import constants
from base.errors import UserError
from pipeline import cli, vertex
from pipeline import data as data_module
from tests import test_kubeflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = 'europe-west4-docker.pkg.dev/my-project/repo/cifar100-tfx:1'
DATA = '/gcs/my-bucket/cifar-100-python.tar.gz'
VERTEX_FLAGS = [
    '--data', DATA, '--trust-data', '--output-dir', 'gs://my-bucket/cifar100', '--image', IMAGE,
    '--model', 'simple_cnn', '--tune', '--tuner-trials', '4', '--project', 'my-project',
    '--region', 'europe-west4', '--beam-runner', 'dataflow', '--machine-type', 'n2-standard-4',
    '--max-workers', '8', '--training-machine-type', 'n1-standard-8',
    '--gpu', 'NVIDIA_TESLA_T4:2', '--tuner-parallel-trials', '3']
# What Dataflow must receive (its pipeline options, as Beam spells them) on every Beam component.
DATAFLOW_ARGS = [
    '--runner=DataflowRunner', '--project=my-project', '--region=europe-west4',
    '--temp_location=gs://my-bucket/cifar100/tmp', f'--sdk_container_image={IMAGE}',
    '--machine_type=n2-standard-4', '--max_num_workers=8']
BEAM_COMPONENTS = [constants.EXAMPLE_GEN, constants.STATISTICS_GEN, constants.TRANSFORM,
                   constants.EVALUATOR]
# The machine each Vertex AI Training worker gets (Vertex AI's CustomJob MachineSpec fields).
MACHINE = {'machine_type': 'n1-standard-8', 'accelerator_type': 'NVIDIA_TESLA_T4',
           'accelerator_count': 2}


@pytest.fixture(scope='module')
def vertex_spec(cifar_archive, tmp_path_factory):
  """The pipeline compiled for Vertex AI from VERTEX_FLAGS, with the data at DATA: (its JSON,
  its PipelineSpec).

  The bucket is not mounted here: the preflight reads the session's archive (a local copy, as
  docs/vertex.md allows) while the pipeline names the /gcs/ path its workers read."""
  def resolve_local_copy(config):
    resolved, sizes = data_module.resolve_data(dataclasses.replace(config, data=cifar_archive[0]))
    return dataclasses.replace(resolved, source_path=config.data), sizes

  output = tmp_path_factory.mktemp('vertex') / 'pipeline.json'
  patch = pytest.MonkeyPatch()
  patch.setattr(kubeflow_runner, 'resolve_data', resolve_local_copy)
  try:
    kubeflow_runner.main(VERTEX_FLAGS + ['--output-file', str(output)])
  finally:
    patch.undo()
  text = output.read_text()
  spec = json.loads(text)
  return text, json_format.ParseDict(spec.get('pipelineSpec', spec),
                                     pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=True)


def _executors(spec):
  return json_format.MessageToDict(spec.deployment_spec)['executors']


def _parameter(spec, task: str, name: str):
  """A component's execution property as compiled into its task (a constant runtime value)."""
  return json.loads(_constant(spec, task, name))


def _constant(spec, task: str, name: str) -> str:
  """A task's constant string parameter; TFX writes it as `constantValue.stringValue` (pipeline
  spec 2.0) or as `constant` (2.1)."""
  value = json_format.MessageToDict(
      spec.root.dag.tasks[task].inputs.parameters[name].runtime_value)
  return value['constantValue']['stringValue'] if 'constantValue' in value else value['constant']


def test_every_component_runs_the_pipeline_image(vertex_spec):
  text, vertex_spec = vertex_spec
  expected = test_kubeflow.DATA_AND_TRANSFORM + [constants.TUNER] + test_kubeflow.MODEL
  assert sorted(vertex_spec.root.dag.tasks) == sorted(test_kubeflow._compiled_ids(expected))
  containers = {name: e['container'] for name, e in _executors(vertex_spec).items()
                if 'container' in e}
  assert len(containers) == len(expected) - 1  # all but the resolver
  assert {c['image'] for c in containers.values()} == {IMAGE}
  assert 'gs://my-bucket/cifar100/pipeline_root' in text
  # ExampleGen reads the data where Vertex AI mounts the bucket.
  assert _constant(vertex_spec, constants.EXAMPLE_GEN, 'input_base') == os.path.dirname(DATA)


def test_beam_components_run_on_dataflow(vertex_spec):
  _, vertex_spec = vertex_spec
  executors = _executors(vertex_spec)
  for component in BEAM_COMPONENTS:
    args = executors[f'{component}_executor']['container']['args']
    beam_args = [a for a in args if a.startswith('--') and '=' in a]
    assert sorted(beam_args) == sorted(DATAFLOW_ARGS), component


def test_trainer_runs_on_vertex_training_with_the_gpus(vertex_spec):
  _, vertex_spec = vertex_spec
  executor = _executors(vertex_spec)[f'{constants.TRAINER}_executor']['container']
  assert executor['args'][1] == ('tfx.extensions.google_cloud_ai_platform.trainer.executor.'
                                 'GenericExecutor')
  config = _parameter(vertex_spec, constants.TRAINER, 'custom_config')
  assert config['ai_platform_enable_vertex'] is True
  assert config['ai_platform_vertex_region'] == 'europe-west4'
  job = config['ai_platform_training_args']
  assert job['project'] == 'my-project'
  assert job['job_spec']['worker_pool_specs'] == [
      {'machine_spec': MACHINE, 'replica_count': 1, 'container_spec': {'image_uri': IMAGE}}]
  # run_fn still finds everything it reads.
  assert config['training']['model'] == 'simple_cnn' and len(config['class_names']) == 20


def test_tuner_runs_parallel_trials_on_vertex_training(vertex_spec):
  _, vertex_spec = vertex_spec
  executor = _executors(vertex_spec)[f'{constants.TUNER}_executor']['container']
  assert executor['args'][1] == 'tfx.extensions.google_cloud_ai_platform.tuner.executor.Executor'
  config = _parameter(vertex_spec, constants.TUNER, 'custom_config')
  assert config['ai_platform_enable_vertex'] is True
  pools = config['ai_platform_tuning_args']['job_spec']['worker_pool_specs']
  # The chief runs one search loop, the second pool the other two.
  assert [p['replica_count'] for p in pools] == [1, 2]
  assert all(p['machine_spec'] == MACHINE for p in pools)
  assert all(p['container_spec'] == {'image_uri': IMAGE} for p in pools)
  assert _parameter(vertex_spec, constants.TUNER, 'tune_args') == {'num_parallel_trials': 3}
  assert config['tuning']['tuner_trials'] == 4


def test_direct_runner_and_local_training_stay_the_default():
  parser = cli.build_parser('')
  vertex.add_flags(parser)
  args = parser.parse_args(['--image', IMAGE])
  cloud = vertex.config_from_args(args)
  config = cli.config_from_args(args)
  assert vertex.beam_args(cloud, config) == ['--direct_running_mode=multi_processing',
                                             '--direct_num_workers=0']
  assert vertex.vertex_training(cloud) is None
  assert not cloud.on_google_cloud
  vertex.check(cloud, config)  # a plain compile (e.g. for Kubeflow on one's cluster) takes local paths


def test_a_fuse_path_becomes_a_gs_uri_for_dataflow():
  assert vertex.gs_uri('/gcs/bucket/a/tmp') == 'gs://bucket/a/tmp'
  assert vertex.gs_uri('gs://bucket/a') == 'gs://bucket/a'


def _run(flags, tmp_path, **env):
  output = tmp_path / 'pipeline.json'
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'kubeflow_runner.py'), '--image', IMAGE,
       '--output-file', str(output), *flags],
      capture_output=True, text=True, cwd=ROOT, timeout=300,
      env={**os.environ, 'NO_GCE_CHECK': 'True', **env})
  return result, output.exists()


@pytest.mark.parametrize('flags,message', [
    (['--data', DATA, '--output-dir', 'gs://b/c', '--submit'],
     'error: --submit needs --project (the GCP project to run in)'),
    (['--data', DATA, '--output-dir', '/tmp/local', '--submit', '--project', 'p'],
     'error: --output-dir /tmp/local: Vertex AI cannot write a local path; use gs://BUCKET/... '
     '(or /gcs/BUCKET/...)'),
    (['--data', '/tmp/cifar.tar.gz', '--output-dir', 'gs://b/c', '--beam-runner', 'dataflow',
      '--project', 'p'],
     'error: --data /tmp/cifar.tar.gz: Vertex AI cannot read a local path; copy the data to a '
     'bucket and pass /gcs/BUCKET/... (mounted here with gcsfuse, or a local copy at that path)'),
    (['--data', DATA, '--output-dir', 'gs://b/c', '--beam-runner', 'dataflow'],
     'error: --beam-runner dataflow needs --project (the GCP project to run in)'),
    (['--gpu', 'T4', '--training-machine-type', 'n1-standard-8', '--project', 'p'],
     'error: --gpu T4: expected TYPE:COUNT, e.g. NVIDIA_TESLA_T4:1'),
    (['--machine-type', 'n2-standard-4'],
     'error: --machine-type is a Dataflow setting: add --beam-runner dataflow'),
    (['--tuner-parallel-trials', '2'],
     'error: --tuner-parallel-trials runs trials on Vertex AI Training: it needs '
     '--training-machine-type'),
])
def test_refused_before_compiling_with_one_line(tmp_path, flags, message):
  result, compiled = _run(flags, tmp_path)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == message
  assert 'Traceback' not in result.stderr
  assert not compiled


def _check(*flags):
  parser = cli.build_parser('')
  vertex.add_flags(parser)
  args = parser.parse_args(['--image', IMAGE, '--data', DATA, '--output-dir', 'gs://b/c', *flags])
  vertex.check(vertex.config_from_args(args), cli.config_from_args(args))


def test_gpus_are_vertex_s_and_need_a_training_machine():
  _check('--gpu', 'NVIDIA_L4:1', '--training-machine-type', 'g2-standard-8', '--project', 'p')
  with pytest.raises(UserError, match=r'^--gpu NVIDIA_TESLA_T4:1 needs --training-machine-type \('
                     r'a machine that takes this GPU, e.g. n1-standard-8 for T4, g2-standard-8 for '
                     r'L4\)$'):
    _check('--gpu', 'NVIDIA_TESLA_T4:1', '--project', 'p')
  with pytest.raises(UserError) as error:
    _check('--gpu', 'NVIDIA_GTX_1080:1', '--training-machine-type', 'n1-standard-8', '--project',
           'p')
  message = str(error.value)
  assert message.startswith("--gpu NVIDIA_GTX_1080:1: unknown GPU type 'NVIDIA_GTX_1080'; "
                            'Vertex AI has: ')
  assert {'NVIDIA_TESLA_T4', 'NVIDIA_L4', 'NVIDIA_A100_80GB'} <= set(
      message.split(': ')[-1].split(', '))
  with pytest.raises(UserError, match='^--gpu NVIDIA_L4:0: expected TYPE:COUNT'):
    _check('--gpu', 'NVIDIA_L4:0', '--training-machine-type', 'g2-standard-8', '--project', 'p')


def test_submit_without_credentials_says_how_to_log_in(tmp_path):
  result, compiled = _run(
      ['--data', DATA, '--output-dir', 'gs://b/c', '--submit', '--project', 'p'], tmp_path,
      GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / 'missing-key.json'))
  assert result.returncode == 2 and not compiled
  assert 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      'error: no Google Cloud credentials: run `gcloud auth application-default login` (or set '
      'GOOGLE_APPLICATION_CREDENTIALS to a service account key file), then submit again')


# --- tf.distribute: what the Trainer runs under on a machine with several GPUs ---

_DISTRIBUTED_SCRIPT = '''
"""Trains one tiny model on one device, then under MirroredStrategy over two logical CPUs."""
import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from base.configs import TrainingConfig  # pylint: disable=g-import-not-at-top
from modules import trainer, training  # pylint: disable=g-import-not-at-top

CLASSES, SIZE, BATCH = 4, 16, 32
COLORS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]], np.float32)


def dataset(n: int, seed: int, repeat: bool) -> tf.data.Dataset:
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % CLASSES
  images = COLORS[labels][:, None, None, :] + rng.normal(0, 60, (n, SIZE, SIZE, 3))
  data = tf.data.Dataset.from_tensor_slices((np.clip(images, 0, 255).astype(np.float32),
                                             labels.astype(np.int64)))
  return (data.shuffle(n, seed=seed).repeat() if repeat else data).batch(BATCH)


config = TrainingConfig(model='simple_cnn', epochs=3, batch_size=BATCH, optimizer='adam',
                        learning_rate=1e-3, schedule='constant', augment='none',
                        precision='float32', weight_decay=0.0, label_smoothing=0.0, tta='none')
results = {}
for name, strategy in (('one_device', tf.distribute.get_strategy()),
                       ('mirrored', tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']))):
  keras.utils.set_random_seed(0)
  with strategy.scope():
    model = trainer.build(config, CLASSES, SIZE)
    model.compile(loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    untrained = model.evaluate(dataset(128, 2, False), return_dict=True, verbose=0)['accuracy']
    trainer.train(config, model, dataset(256, 0, True), dataset(128, 1, False),
                  steps_per_epoch=8, validation_steps=4)
    accuracy = model.evaluate(dataset(128, 2, False), return_dict=True, verbose=0)['accuracy']
  # What the time budget's epoch count goes through: each replica proposes 10 + its id.
  smallest = training.smallest_across_replicas(
      strategy, lambda: 10 + tf.distribute.get_replica_context().replica_id_in_sync_group)
  results[name] = {'untrained': float(untrained), 'accuracy': float(accuracy),
                   'smallest': smallest, **trainer.distribution_stats(strategy)}
json.dump(results, sys.stdout)
'''


def test_mirrored_strategy_learns_as_one_device_does(tmp_path):
  """The same training (data, seed, global batch 32) on one device and under MirroredStrategy over
  two logical CPU devices (what two GPUs get): both learn the task, to within 0.1 accuracy, and
  the record says which strategy and how many replicas. In a subprocess: logical devices must be
  set before TensorFlow starts."""
  result = subprocess.run([sys.executable, '-c', _DISTRIBUTED_SCRIPT], capture_output=True,
                          text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, 'PYTHONPATH': ROOT})
  assert result.returncode == 0, result.stderr[-3000:]
  runs = json.loads(result.stdout.strip().splitlines()[-1])
  one, mirrored = runs['one_device'], runs['mirrored']
  assert (one['strategy'], one['num_replicas_in_sync']) == ('DefaultDistributionStrategy', 1)
  assert (mirrored['strategy'], mirrored['num_replicas_in_sync']) == ('MirroredStrategy', 2)
  for run in (one, mirrored):
    assert run['untrained'] < 0.5 and run['accuracy'] >= 0.9, run  # 4 classes: chance is 0.25
  assert abs(one['accuracy'] - mirrored['accuracy']) <= 0.1
  # The replicas agree on the smallest proposal (replica 0's 10, not replica 1's 11).
  assert one['smallest'] == mirrored['smallest'] == 10


def test_strategy_from_the_machine(monkeypatch):
  from modules import trainer, training  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv('TF_CONFIG', raising=False)
  assert trainer.distribution_stats(trainer.make_strategy()) == {
      'strategy': 'DefaultDistributionStrategy', 'num_replicas_in_sync': 1}  # no GPU here
  # Vertex AI's TF_CONFIG for a one-machine job names only the chief: still one device.
  monkeypatch.setenv('TF_CONFIG', json.dumps({'cluster': {'chief': ['host:2222']},
                                              'task': {'type': 'chief', 'index': 0}}))
  assert trainer.distribution_stats(trainer.make_strategy())['num_replicas_in_sync'] == 1


@pytest.mark.e2e
def test_the_trainer_records_its_strategy(pipeline_run):
  from tests import e2e  # pylint: disable=g-import-not-at-top
  config, _ = pipeline_run
  model_dir, _ = e2e.model_dirs(config)
  with open(os.path.join(model_dir, constants.TRAINING_STATS_FILE)) as f:
    stats = json.load(f)
  # This machine: one CPU, no GPU, no TF_CONFIG.
  assert stats['distribution'] == {'strategy': 'DefaultDistributionStrategy',
                                   'num_replicas_in_sync': 1}
