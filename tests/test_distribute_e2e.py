"""MultiWorkerMirroredStrategy for real: TFX's Trainer executor runs `modules.trainer.run_fn` in
two processes on this machine, a chief and a worker joined by TF_CONFIG on two loopback ports, as
Vertex AI Training runs a multi-replica job; and the data sharding each worker gets."""
import json
import os
import socket
import subprocess
import sys
import time
from typing import Dict, List

import numpy as np
import pytest

from base import constants
from modules import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One process of the cluster: the real Trainer executor (FnArgs from the artifacts, run_fn, TFX's
# check that the serving model exists), with three recorders around it: where the export went and
# the weights the process exported, where each epoch's backup was saved, and which images the
# process got in its first steps.
_WORKER_SCRIPT = '''
import hashlib
import itertools
import json
import os
import sys

import numpy as np
import tensorflow as tf
from tfx.components.trainer import executor as trainer_executor
from tfx.components.util import udf_utils
from tfx.types import standard_artifacts

from modules import export

spec = json.loads(sys.argv[1])
record = {'backups': []}

real_export = export.export_serving_model
def recording_export(model, tf_transform_output, class_names, export_dir, provenance, tta='none'):
  record['export_dir'] = export_dir
  np.savez(spec['weights_file'], *model.get_weights())
  real_export(model, tf_transform_output, class_names, export_dir, provenance, tta)
export.export_serving_model = recording_export

def record_backups(trainer_module):
  real_on_epoch_end = trainer_module.EpochBackup.on_epoch_end
  def recording_on_epoch_end(self, epoch, logs=None):
    real_on_epoch_end(self, epoch, logs)
    saved = os.path.join(self._phase_dir(), f'epoch-{epoch + 1:04d}')
    record['backups'].append({'folder': self.folder, 'saved': os.path.isdir(saved)})
  trainer_module.EpochBackup.on_epoch_end = recording_on_epoch_end

# TFX reloads the run_fn's module (`import_utils.import_func_from_module`): record on the class
# the reloaded module defines.
real_get_fn = udf_utils.get_fn
def get_fn_and_record(exec_properties, fn_name):
  fn = real_get_fn(exec_properties, fn_name)
  record_backups(sys.modules[fn.__module__])
  return fn
udf_utils.get_fn = get_fn_and_record

# The first dataset Keras distributes is the train split: which images this worker gets in its
# first steps (a second iterator over the same distributed dataset, before training starts).
strategy_class = tf.distribute.MultiWorkerMirroredStrategy
real_distribute = strategy_class.experimental_distribute_dataset
def recording_distribute(self, dataset, options=None):
  distributed = real_distribute(self, dataset, options)
  if 'train_batches' not in record:
    record['train_batches'] = [
        [hashlib.sha256(image.tobytes()).hexdigest()
         for image in self.experimental_local_results(images)[0].numpy()]
        for images, _ in itertools.islice(iter(distributed), spec['steps'])]
  return distributed
strategy_class.experimental_distribute_dataset = recording_distribute


def artifact(entry):
  result = getattr(standard_artifacts, entry['type'])()
  result.uri = entry['uri']
  if entry.get('split_names'):
    result.split_names = entry['split_names']
  return result


trainer_executor.GenericExecutor().Do(
    {key: [artifact(e) for e in entries] for key, entries in spec['inputs'].items()},
    {'model': [artifact({'type': 'Model', 'uri': spec['model']})],
     'model_run': [artifact({'type': 'ModelRun', 'uri': spec['model_run']})]},
    spec['exec_properties'])
with open(spec['record_file'], 'w') as f:
  json.dump(record, f)
'''

_TIMEOUT_SEC = 600


def _free_ports(n: int) -> List[int]:
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _trainer_inputs(config):
  """(input artifacts, exec properties) of the session run's completed Trainer execution, read
  from ML Metadata: exactly what TFX's Trainer executor was given."""
  from tests import e2e  # pylint: disable=g-import-not-at-top
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  store = e2e.store_for(config)
  node = store.get_context_by_type_and_name(
      'node', f'{config.runner.pipeline_name}.{constants.TRAINER}')
  done = [e for e in store.get_executions_by_context(node.id)
          if e.last_known_state == metadata_store_pb2.Execution.COMPLETE]
  assert done, 'no completed Trainer execution in ML Metadata'
  execution = max(done, key=lambda e: (e.create_time_since_epoch, e.id))
  events = [e for e in store.get_events_by_execution_ids([execution.id])
            if e.type == metadata_store_pb2.Event.INPUT]
  artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
  types = {t.id: t.name for t in store.get_artifact_types()}
  found: Dict[str, list] = {}
  for event in events:
    a = artifacts[event.artifact_id]
    entry = {'type': types[a.type_id], 'uri': a.uri}
    if 'split_names' in a.properties:
      entry['split_names'] = a.properties['split_names'].string_value
    found.setdefault(event.path.steps[0].key, []).append(entry)
  properties = {key: value.string_value for key, value in execution.custom_properties.items()
                if key in ('run_fn', 'custom_config', 'train_args', 'eval_args')}
  return found, properties


def _run_cluster(specs: Dict[str, dict], ports: List[int]) -> Dict[str, subprocess.CompletedProcess]:
  """Starts one process per task of `specs` ({'chief': spec, 'worker': spec}) and waits for all;
  if one fails, ends the others (they would wait for it forever)."""
  cluster = {'chief': [f'localhost:{ports[0]}'], 'worker': [f'localhost:{ports[1]}']}
  processes = {}
  for task, spec in specs.items():
    tf_config = {'cluster': cluster, 'task': {'type': task, 'index': 0}}
    log = open(spec['log_file'], 'w')  # pylint: disable=consider-using-with
    processes[task] = (subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, '-c', _WORKER_SCRIPT, json.dumps(spec)], cwd=ROOT, stdout=log,
        stderr=subprocess.STDOUT, env={**os.environ, 'PYTHONPATH': ROOT,
                                       'TF_CONFIG': json.dumps(tf_config)}), log)
  deadline = time.monotonic() + _TIMEOUT_SEC
  while any(p.poll() is None for p, _ in processes.values()):
    failed = any(p.poll() not in (None, 0) for p, _ in processes.values())
    if failed or time.monotonic() > deadline:
      for p, _ in processes.values():
        if p.poll() is None:
          p.kill()
    time.sleep(0.5)
  results = {}
  for task, (p, log) in processes.items():
    log.close()
    with open(specs[task]['log_file']) as f:
      results[task] = subprocess.CompletedProcess(p.args, p.returncode, f.read(), '')
  return results


def _under(path: str, folder: str) -> bool:
  return os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) == os.path.abspath(
      folder)


@pytest.mark.e2e
def test_two_workers_train_one_model_that_only_the_chief_writes(pipeline_run, tmp_path):
  """The session run's Trainer inputs, trained for one short epoch by a chief and a worker under
  MultiWorkerMirroredStrategy (one CPU replica each; global batch 32, 16 per worker). Both give
  every save its call, but only the chief's land in the Trainer's folders: the worker's export,
  Keras model and epoch backups go to a temporary folder that is gone at the end. The chief's
  model is the one the worker computed, weight for weight."""
  import keras  # pylint: disable=g-import-not-at-top
  config, _ = pipeline_run
  artifacts, properties = _trainer_inputs(config)
  custom = json.loads(properties['custom_config'])
  steps = 2
  # No augmentation: an image's bytes then name the example it came from.
  custom[trainer.TRAINING].update(epochs=1, steps_per_epoch=steps, augment='none')
  node_dir = tmp_path / constants.TRAINER  # as TFX lays out a Trainer's outputs
  model_uri, model_run_uri = str(node_dir / 'model' / '1'), str(node_dir / 'model_run' / '1')
  specs = {task: {'inputs': artifacts, 'model': model_uri, 'model_run': model_run_uri,
                  'exec_properties': {**properties, 'custom_config': json.dumps(custom)},
                  'steps': steps, 'weights_file': str(tmp_path / f'{task}-weights.npz'),
                  'record_file': str(tmp_path / f'{task}-record.json'),
                  'log_file': str(tmp_path / f'{task}.log')}
           for task in ('chief', 'worker')}
  results = _run_cluster(specs, _free_ports(2))
  for task, result in results.items():
    assert result.returncode == 0, f'{task}:\n{result.stdout[-4000:]}'
  records = {}
  for task, spec in specs.items():
    with open(spec['record_file']) as f:
      records[task] = json.load(f)

  # Trained together: the stats record the strategy and its two replicas.
  serving_dir = os.path.join(model_uri, 'Format-Serving')  # TFX's serving_model_dir
  with open(os.path.join(model_uri, constants.TRAINING_STATS_FILE)) as f:
    stats = json.load(f)
  assert stats['distribution'] == {'strategy': 'MultiWorkerMirroredStrategy',
                                   'num_replicas_in_sync': 2}
  # Each global batch of 32 split in two halves of 16: the workers read different examples (DATA
  # sharding of the one cached split), none twice in the first epoch.
  batches = [records[task]['train_batches'] for task in ('chief', 'worker')]
  assert [len(b) for b in batches] == [steps, steps]
  for chief_batch, worker_batch in zip(*batches):
    assert len(chief_batch) == len(worker_batch) == custom[trainer.TRAINING]['batch_size'] // 2
  seen = [image for task_batches in batches for batch in task_batches for image in batch]
  assert len(set(seen)) == len(seen) == steps * custom[trainer.TRAINING]['batch_size']
  # Only the chief wrote into the Trainer's folders; the worker saved too, elsewhere, and cleaned.
  chief, worker = records['chief'], records['worker']
  assert chief['export_dir'] == serving_dir
  assert not _under(worker['export_dir'], str(tmp_path))
  assert not os.path.exists(worker['export_dir'])
  assert len(chief['backups']) == 1 and chief['backups'][0]['saved']
  assert _under(chief['backups'][0]['folder'], str(node_dir / trainer.RESUME_DIR))
  assert len(worker['backups']) == 1 and worker['backups'][0]['saved']
  assert not _under(worker['backups'][0]['folder'], str(tmp_path))
  assert not os.path.exists(worker['backups'][0]['folder'])
  written = {os.path.relpath(os.path.join(d, f), node_dir)
             for d, _, files in os.walk(node_dir) for f in files}
  assert written and all(_under(node_dir / w, model_uri) or _under(node_dir / w, model_run_uri)
                         for w in written), written  # no worker folder, the backups removed
  assert os.path.exists(os.path.join(serving_dir, 'saved_model.pb'))
  # One model: the chief's export is what the worker computed.
  with np.load(specs['chief']['weights_file']) as c, np.load(specs['worker']['weights_file']) as w:
    chief_weights, worker_weights = [c[k] for k in c.files], [w[k] for k in w.files]
  assert len(chief_weights) == len(worker_weights) > 0
  for a, b in zip(chief_weights, worker_weights):
    np.testing.assert_array_equal(a, b)
  saved = keras.saving.load_model(os.path.join(model_run_uri, trainer.KERAS_MODEL_FILE),
                                  compile=False)
  for a, b in zip(saved.get_weights(), worker_weights):
    np.testing.assert_array_equal(a, b)

