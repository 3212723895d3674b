"""Faults a long run meets: a kill (SIGKILL of the real process) mid-component and a restart with
the same command, two runs at once on one output folder, a source that changes at the same path,
and a full disk. docs/reliability.md lists each case, what the user sees and what is kept."""
import dataclasses
import errno
import glob
import json
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from typing import Dict, Sequence

import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

import local_runner
from base import constants
from base.configs import TrainingConfig
from base.errors import os_error_message
from components import tuner as tuner_component
from components.example_gen import component as example_gen_component
from modules import trainer
from modules import tuner as tuner_module
from pipeline import cli
from tests import conftest, e2e, fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 3  # the kill in the Trainer lands after its first saved epoch, before its last
# The session's run (tests/conftest.py short_run_config), as local_runner.py flags.
RUN_FLAGS = ('--trust-data', '--team-seed', '2', '--num-classes', '20', '--model', 'simple_cnn',
             '--batch-size', '32', '--optimizer', 'adam', '--learning-rate', '1e-3',
             '--schedule', 'constant', '--epochs', str(EPOCHS))
STATES = {1: 'NEW', 2: 'RUNNING', 3: 'COMPLETE', 4: 'FAILED', 5: 'CACHED', 6: 'CANCELED'}


def _start(archive: str, output_dir: str, log: str) -> subprocess.Popen:
  """local_runner.py in its own process group (its Beam workers die with it), output to `log`."""
  with open(log, 'w') as out:
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'local_runner.py'), '--data', archive,
         '--output-dir', output_dir, *RUN_FLAGS],
        cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, 'PYTHONHASHSEED': '0'})


def _executions(output_dir: str):
  """[(id, component class, state name)] from ML Metadata's SQLite file, read-only (the run
  writing it is left alone); [] before it exists."""
  path = os.path.join(output_dir, 'metadata.sqlite')
  if not os.path.exists(path):
    return []
  try:
    with sqlite3.connect(f'file:{path}?mode=ro', uri=True, timeout=5) as db:
      rows = db.execute('SELECT e.id, t.name, e.last_known_state FROM Execution e '
                        'JOIN Type t ON e.type_id = t.id ORDER BY e.id').fetchall()
  except sqlite3.Error:
    return []  # being created
  return [(i, name.rsplit('.', 1)[-1], STATES.get(state, str(state))) for i, name, state in rows]


def _kill_when(process: subprocess.Popen, ready, what: str, timeout: float = 1200) -> None:
  """SIGKILLs the run's process group as soon as `ready()` holds (`timeout` only guards against
  a hang: on a loaded 2-core machine a run reached the Trainer's first epoch after 400 s)."""
  deadline = time.time() + timeout
  while not ready():
    assert process.poll() is None, f'the run ended (code {process.returncode}) before {what}'
    assert time.time() < deadline, f'no {what} within {timeout} s'
    time.sleep(0.02)
  os.killpg(process.pid, signal.SIGKILL)
  process.wait()


def _running_for(output_dir: str, component: str, seconds: float):
  """A condition: `component` has been RUNNING in ML Metadata for `seconds` (its executor is at
  work, writing its outputs)."""
  seen = []

  def ready() -> bool:
    if any(c == component and s == 'RUNNING' for _, c, s in _executions(output_dir)):
      seen.append(seen[0] if seen else time.time())
      return time.time() - seen[0] >= seconds
    return False
  return ready


def _trainer_backups(output_dir: str):
  return glob.glob(os.path.join(output_dir, 'pipeline_root', constants.TRAINER,
                                trainer.RESUME_DIR, '*', 'phase-0', 'epoch-*'))


def _read(path: str) -> str:
  with open(path) as f:
    return f.read()


@pytest.fixture(scope='module')
def faulty_runs(cifar_archive, tmp_path_factory):
  """The session's run as real processes in one folder: killed in Transform; restarted and
  killed in the Trainer after its first saved epoch; then started twice at once, the first
  killed in the Evaluator while the second waits for it."""
  folder = tmp_path_factory.mktemp('faults')
  out, archive = str(folder / 'out'), cifar_archive[0]
  logs = {name: str(folder / f'{name}.txt') for name in ('transform', 'trainer', 'first', 'second')}

  run = _start(archive, out, logs['transform'])
  # As soon as it runs: Transform writes only its graph (no Beam pass over the pixels), in under
  # half a second on the tests' data on a quiet machine.
  _kill_when(run, _running_for(out, constants.TRANSFORM, 0), 'Transform running')
  after_transform_kill = _executions(out)

  run = _start(archive, out, logs['trainer'])
  _kill_when(run, lambda: _trainer_backups(out), 'a saved Trainer epoch')
  killed_at_epoch = max(int(p.rsplit('-', 1)[1]) for p in _trainer_backups(out))
  after_trainer_kill = _executions(out)

  first = _start(archive, out, logs['first'])
  lock = os.path.join(out, local_runner.LOCK_FILE)
  deadline = time.time() + 600
  while not (os.path.exists(lock) and _read(lock).startswith(f'run {first.pid} ')):
    assert first.poll() is None and time.time() < deadline, _read(logs['first'])
    time.sleep(0.1)
  second = _start(archive, out, logs['second'])
  _kill_when(first, _running_for(out, constants.EVALUATOR, 0.5), 'Evaluator running')
  second_code = second.wait(timeout=1800)
  return dict(out=out, logs={k: _read(v) for k, v in logs.items()},
              second_code=second_code, first_pid=first.pid,
              killed_at_epoch=killed_at_epoch, after_transform_kill=after_transform_kill,
              after_trainer_kill=after_trainer_kill)


@pytest.mark.e2e
def test_a_kill_leaves_the_component_unpublished_and_the_restart_reuses_the_rest(faulty_runs):
  before = faulty_runs['after_transform_kill']
  assert [c for _, c, s in before if s == 'RUNNING'] == [constants.TRANSFORM]
  assert {c for _, c, s in before if s == 'COMPLETE'} >= {
      'Cifar100ExampleGen', 'StatisticsGen', 'SchemaGen', 'ValidationGate'}
  # The restart reused everything that had completed, and ran Transform again.
  restarted = [(c, s) for _, c, s in faulty_runs['after_trainer_kill'][len(before):]]
  assert ('Cifar100ExampleGen', 'CACHED') in restarted and ('StatisticsGen', 'CACHED') in restarted
  assert (constants.TRANSFORM, 'COMPLETE') in restarted
  log = faulty_runs['logs']['trainer']
  assert ('  Transform: an earlier run was stopped while it ran; marked CANCELED, ' in log), log
  assert '  StatisticsGen cached' in log


@pytest.mark.e2e
def test_the_killed_executions_are_canceled_and_their_partial_outputs_gone(faulty_runs):
  out = faulty_runs['out']
  final = _executions(out)
  assert not [e for e in final if e[2] in ('NEW', 'RUNNING')], final
  killed = [(i, c) for i, c, s in final if s == 'CANCELED']
  assert [c for _, c in killed] == [constants.TRANSFORM, constants.TRAINER, constants.EVALUATOR]
  for execution_id, component in killed:
    assert not glob.glob(os.path.join(out, 'pipeline_root', component, '*', str(execution_id)))
  # Only published artifacts are LIVE in ML Metadata, and each one's folder exists.
  store = e2e.store_for(conftest.short_run_config('', out))
  for artifact in store.get_artifacts():
    assert os.path.exists(artifact.uri), artifact.uri


@pytest.mark.e2e
def test_the_trainer_resumes_from_its_last_saved_epoch(faulty_runs):
  epoch = faulty_runs['killed_at_epoch']
  assert 1 <= epoch < EPOCHS
  log = faulty_runs['logs']['first']
  assert f'Trainer: resuming from epoch {epoch} ' in log, log
  config = conftest.short_run_config('', faulty_runs['out'])
  model_dir, _ = e2e.model_dirs(config)
  with open(os.path.join(model_dir, constants.TRAINING_STATS_FILE)) as f:
    stats = json.load(f)
  assert stats['resumed_from_epoch'] == epoch
  # Every epoch is on record, the ones the killed run finished included.
  assert stats['epochs'] == EPOCHS and len(stats['val_accuracy']) == EPOCHS
  assert not _trainer_backups(faulty_runs['out'])  # removed once the model was exported


@pytest.mark.e2e
def test_two_runs_at_once_the_second_waits_for_the_first(faulty_runs):
  """The first is killed in the Evaluator while the second waits: the kill frees the lock, and
  the second reuses everything the first finished, runs the Evaluator again and completes."""
  second = faulty_runs['logs']['second']
  assert faulty_runs['second_code'] == 0, second
  assert second.startswith(f'{faulty_runs["out"]} is in use by run {faulty_runs["first_pid"]} '
                           'started '), second
  assert 'waiting for it to finish (Ctrl-C to stop)' in second.splitlines()[0]
  assert '  Evaluator: an earlier run was stopped while it ran; marked CANCELED' in second
  for component in ('Cifar100ExampleGen', 'Transform', 'Trainer'):
    assert f'  {component} cached' in second, second
  assert '  Evaluator done in ' in second and 'test accuracy ' in second


# ------------------------------------------------------------------ the same result -------

@pytest.fixture(scope='module')
def uninterrupted_run(pipeline_run, tmp_path_factory):
  """The faulty runs' command run without a kill, for the least test time: a copy of the
  session's ML Metadata in a new folder, so that every component whose config is the same
  (ExampleGen .. Transform: the session's run differs only in training, 2 epochs under a time
  budget against --epochs 3) is a cache hit on the session's artifacts, and only the Trainer, the
  Evaluator and the Pusher run. Returns its config; the session's own outputs are left as they
  are (its folder gets no new run)."""
  config, _ = pipeline_run
  out = tmp_path_factory.mktemp('uninterrupted')
  reference = config.replace(
      runner=dataclasses.replace(config.runner, output_dir=str(out)),
      training=dataclasses.replace(config.training, epochs=EPOCHS, time_budget=None))
  shutil.copy(config.runner.metadata_path, reference.runner.metadata_path)
  e2e.run_resolved(reference)
  return reference


def _outputs(config, component: str) -> Dict[str, str]:
  """{output key: artifact folder} of `component` in the newest pipeline run (a cached
  execution names the artifacts it reused)."""
  store = e2e.store_for(config)
  execution = e2e.latest_run_executions(config)[component]
  events = [e for e in store.get_events_by_execution_ids([execution.id])
            if e.type == metadata_store_pb2.Event.OUTPUT]
  uris = {a.id: a.uri for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
  return {e.path.steps[0].key: uris[e.artifact_id] for e in events}


def _files(folder: str) -> Dict[str, bytes]:
  """{path under `folder`: content} of every file in it."""
  found = {}
  for parent, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(parent, name)
      with open(path, 'rb') as f:
        found[os.path.relpath(path, folder)] = f.read()
  return found


def _candidate_metrics(uri: str) -> Dict[tuple, bytes]:
  """{(slice, metric, sub key): value} of the evaluated model, as serialized protos. The
  baseline's metrics and the differences to it are left out: the session's blessed model is the
  reference's baseline, the faulty runs had none."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  metrics = {}
  for for_slice in tfma.load_metrics(uri):
    for item in for_slice.metric_keys_and_values:
      if item.key.is_diff or item.key.model_name not in ('', 'candidate'):
        continue
      metrics[(for_slice.slice_key.SerializeToString(deterministic=True), item.key.name,
               item.key.sub_key.SerializeToString(deterministic=True))] = (
                   item.value.SerializeToString(deterministic=True))
  return metrics


# The transform graph's SavedModel: TensorFlow names traced functions with counters global to the
# process (`__inference_..._1234`), which could depend on what the process traced before (the
# session's run is traced inside pytest, after other tests; the restarted one in a fresh
# process), and the fingerprint hashes that graph. They were byte-identical in the runs measured
# (docs/reliability.md); where they differ, what the two graphs compute is compared instead.
_GRAPH_FILES = (os.path.join('transform_fn', 'saved_model.pb'),
                os.path.join('transform_fn', 'fingerprint.pb'))


def _transformed(transform_graph: str, records) -> Dict[str, np.ndarray]:
  """What a transform graph computes from serialized raw examples."""
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  output = tft.TFTransformOutput(transform_graph)
  features = tf.io.parse_example(tf.constant(records), output.raw_feature_spec())
  return {key: value.numpy() for key, value in output.transform_features_layer()(features).items()}


@pytest.mark.e2e
def test_the_restarted_runs_data_are_the_uninterrupted_runs_byte_for_byte(faulty_runs,
                                                                         pipeline_run):
  """ExampleGen ran once, Transform twice (killed, then again on restart); both ended with the
  files the session's uninterrupted run wrote, every byte (their config is the same), but for the
  transform graph's own SavedModel graph (see `_GRAPH_FILES`), which must compute the same
  features, exactly, from every example of every split."""
  faulty = conftest.short_run_config('', faulty_runs['out'])
  reference, _ = pipeline_run
  graphs = []
  for component in (constants.EXAMPLE_GEN, constants.TRANSFORM):
    ours, theirs = _outputs(faulty, component), _outputs(reference, component)
    assert sorted(ours) == sorted(theirs) and ours, (component, ours, theirs)
    compared = 0
    for key in ours:  # Transform's updated_analyzer_cache is an empty folder
      assert ours[key] != theirs[key]  # two runs' artifacts, not one
      files, expected = _files(ours[key]), _files(theirs[key])
      assert sorted(files) == sorted(expected), (component, key)
      differing = [name for name in files if files[name] != expected[name]]
      assert not [name for name in differing if name not in _GRAPH_FILES], (component, key)
      if differing:
        graphs.append((ours[key], theirs[key]))
      compared += len(files)
    assert compared, component
  records = [record for split in constants.SPLITS
             for record in e2e.serialized_split(faulty, split)]
  for ours, theirs in graphs:
    computed, expected = _transformed(ours, records), _transformed(theirs, records)
    assert sorted(computed) == sorted(expected) and computed
    for key in computed:
      np.testing.assert_array_equal(computed[key], expected[key])


@pytest.mark.e2e
def test_the_resumed_trainer_ends_with_the_uninterrupted_model_and_metrics(faulty_runs,
                                                                          uninterrupted_run):
  """The Trainer killed after a saved epoch and resumed gives the weights of a training that was
  never stopped, bit for bit, and the Evaluator (killed too, then run again) the same metrics."""
  faulty = conftest.short_run_config('', faulty_runs['out'])
  assert 1 <= faulty_runs['killed_at_epoch'] < EPOCHS
  trainers = [e2e.latest_run_executions(c)[constants.TRAINER] for c in (faulty, uninterrupted_run)]
  # The same command: the Trainer's whole config (training, classes, code fingerprint).
  configs = [{**t.properties, **t.custom_properties}['custom_config'] for t in trainers]
  assert configs[0] == configs[1]
  models = [keras.models.load_model(
      os.path.join(_outputs(c, constants.TRAINER)['model_run'], trainer.KERAS_MODEL_FILE),
      compile=False) for c in (faulty, uninterrupted_run)]
  weights = [m.get_weights() for m in models]
  assert len(weights[0]) == len(weights[1]) > 0
  for ours, theirs in zip(*weights):
    np.testing.assert_array_equal(ours, theirs)
  metrics = [_candidate_metrics(_outputs(c, constants.EVALUATOR)['evaluation'])
             for c in (faulty, uninterrupted_run)]
  assert metrics[0] and metrics[0] == metrics[1]


# ------------------------------------------------------------------ data that changes --------

def _relabel(train_pickle: str, seed: int, team: Sequence[int]) -> None:
  """Rewrites the folder's train pickle with two labels swapped (two images of different classes
  trade classes): the same size, and its modification time put back, as `cp -p` or `rsync -a`
  of an edited copy would leave it."""
  batch, _ = fixtures.cifar100_splits(conftest.TRAIN_PER_CLASS, conftest.TEST_PER_CLASS,
                                      seed)['train']
  labels = batch[b'fine_labels']
  i = next(k for k, label in enumerate(labels) if label in team)
  j = next(k for k, label in enumerate(labels) if label in team and label != labels[i])
  for key in (b'fine_labels', b'coarse_labels'):
    batch[key][i], batch[key][j] = batch[key][j], batch[key][i]
  before = os.stat(train_pickle)
  with open(train_pickle, 'wb') as f:
    pickle.dump(batch, f, protocol=2)
  os.utime(train_pickle, ns=(before.st_atime_ns, before.st_mtime_ns))
  assert os.path.getsize(train_pickle) == before.st_size


def _execution_property(config, name: str) -> str:
  execution = e2e.latest_run_executions(config)[constants.EXAMPLE_GEN]
  props = {**execution.properties, **execution.custom_properties}
  return props[name].string_value


@pytest.mark.e2e
def test_a_source_changed_at_the_same_path_is_read_again_and_said(cifar_archive, tmp_path,
                                                                   capsys):
  """TFX's own input fingerprint (sizes and modification times) stays the same; the content
  fingerprint does not, so ExampleGen runs again instead of reusing the stale examples."""
  folder = fixtures.extract_archive(cifar_archive[0], str(tmp_path))
  config, _ = e2e.run_pipeline(conftest.short_run_config(folder, str(tmp_path / 'out')),
                               only=[constants.EXAMPLE_GEN])
  tfx_fingerprint = _execution_property(config, 'input_fingerprint')
  content = _execution_property(config, example_gen_component.CONTENT_FINGERPRINT)
  examples = sorted(e2e.serialized_split(config, constants.TRAIN_SPLIT))
  capsys.readouterr()

  _relabel(os.path.join(folder, 'train'), seed=0, team=config.data.fine_label_ids)
  e2e.run_resolved(config, only=[constants.EXAMPLE_GEN])
  assert e2e.execution_states(config) == {constants.EXAMPLE_GEN: 'COMPLETE'}
  assert _execution_property(config, 'input_fingerprint') == tfx_fingerprint
  changed = _execution_property(config, example_gen_component.CONTENT_FINGERPRINT)
  assert changed != content
  assert sorted(e2e.serialized_split(config, constants.TRAIN_SPLIT)) != examples
  assert (f'    {folder} changed since the last run that read it (content {content} -> '
          f'{changed}): ExampleGen reads it again' in capsys.readouterr().out)

  e2e.run_resolved(config, only=[constants.EXAMPLE_GEN])  # unchanged since: the cache again
  assert e2e.execution_states(config) == {constants.EXAMPLE_GEN: 'CACHED'}
  assert 'changed since the last run' not in capsys.readouterr().out


def test_content_fingerprint_covers_what_example_gen_reads(tmp_path):
  """An image folder: the images, not the hidden or non-image files beside them."""
  fixtures.write_image_folder(str(tmp_path), ['cat', 'dog'], train_per_class=3)
  source = constants.SOURCE_IMAGE_FOLDER
  before = example_gen_component.content_fingerprint(source, str(tmp_path))
  for name in ('.DS_Store', 'notes.txt'):
    with open(tmp_path / 'train' / 'cat' / name, 'w') as f:
      f.write('x')
  assert example_gen_component.content_fingerprint(source, str(tmp_path)) == before
  image = tmp_path / 'train' / 'dog' / '0001.png'
  content = image.read_bytes()
  image.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
  assert example_gen_component.content_fingerprint(source, str(tmp_path)) != before


# ------------------------------------------------------------------ the Trainer's backup -----

class Killed(Exception):
  """Stands for the process dying in the middle of training."""


def _tiny_training(backup=None, stop_at=None):
  """A dense model with dropout on data reshuffled every pass, in batches that straddle the
  passes (72 examples, 4 steps of 16 per epoch), as the Trainer's input pipeline is: the random
  state and the order are what a resumed training has to get back."""
  keras.utils.set_random_seed(1)
  inputs = keras.Input((4,))
  hidden = keras.layers.Dropout(0.5)(keras.layers.Dense(8, activation='relu')(inputs))
  model = keras.Model(inputs, keras.layers.Dense(2)(hidden))  # logits, as the project's models
  rng = np.random.default_rng(0)
  x = rng.normal(size=(72, 4)).astype('float32')
  data = tf.data.Dataset.from_tensor_slices((x, (x[:, 0] > 0).astype('int64')))
  train_data = data.shuffle(72, seed=3, reshuffle_each_iteration=True).repeat().batch(16)
  data = data.batch(16).repeat()

  class Stop(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
      if epoch == stop_at:
        raise Killed  # the process dies here; the saved state is what survives

  config = TrainingConfig(model='simple_cnn', epochs=3, batch_size=16, optimizer='adam',
                          learning_rate=1e-2, schedule='constant', augment='none')
  timer = trainer.train(config, model, train_data, data, 4, 2, backup=backup,
                        callbacks=[Stop()] if stop_at is not None else [])
  return model, timer


def test_a_resumed_training_equals_an_uninterrupted_one(tmp_path, capsys):
  """Weights, optimizer state and dropout's random state come back exactly, and the resumed fit
  trains on the batches the uninterrupted one trained on next: the same weights, bit for bit.
  The timer keeps the killed run's epochs."""
  uninterrupted, full = _tiny_training()
  with pytest.raises(Killed):
    _tiny_training(trainer.EpochBackup(str(tmp_path)), stop_at=2)
  assert sorted(os.listdir(tmp_path / 'phase-0')) == ['epoch-0002']  # only the newest is kept
  backup = trainer.EpochBackup(str(tmp_path))
  resumed, timer = _tiny_training(backup)
  assert backup.resumed_from == 2
  assert 'Trainer: resuming from epoch 2 ' in capsys.readouterr().out
  for a, b in zip(uninterrupted.get_weights(), resumed.get_weights()):
    np.testing.assert_array_equal(a, b)
  assert [log['loss'] for log in timer.logs] == [log['loss'] for log in full.logs]
  assert timer.first_in_fit == [True, False, True]  # the resumed fit's first epoch traces again
  backup.remove()
  assert not os.path.exists(tmp_path)


def test_a_state_cut_mid_write_is_never_loaded(tmp_path):
  """A kill while an epoch's state is written leaves a `.saving-*` folder, never an epoch-N one:
  the retry loads the previous complete state."""
  with pytest.raises(Killed):
    _tiny_training(trainer.EpochBackup(str(tmp_path)), stop_at=1)
  torn = tmp_path / 'phase-0' / '.saving-x'
  torn.mkdir()
  (torn / 'state.weights.h5').write_bytes(b'half')
  backup = trainer.EpochBackup(str(tmp_path))
  _tiny_training(backup)
  assert backup.resumed_from == 1


# ------------------------------------------------------------------ disk full ----------------

@pytest.mark.parametrize('error, expected', [
    (OSError(errno.ENOSPC, 'No space left on device', '/out/x'),
     '/out/x: No space left on device'),
    (RuntimeError("... [Errno 28] No space left on device: '/out/x' [while running 'Write']"),
     '/out/x: No space left on device'),
    (RuntimeError('Failed to write /out/model/variables.data; No space left on device'),
     '/out/model/variables.data: No space left on device'),
    (ValueError('not a disk problem'), None),
])
def test_os_error_message(error, expected):
  assert os_error_message(error) == expected


def test_a_full_disk_is_one_line_naming_the_path(capsys):
  def main(argv):
    del argv
    try:
      raise OSError(errno.ENOSPC, 'No space left on device', '/out/x')
    except OSError as e:
      raise RuntimeError('Beam wrapped it') from e

  with pytest.raises(SystemExit) as exited:
    cli.run_main(main, [])
  assert exited.value.code == 2
  assert capsys.readouterr().err == (
      'error: /out/x: No space left on device; free space or fix the permissions and run '
      'again: the components that finished are reused from the cache\n')


# ------------------------------------------------------------------ the Tuner's search -------

class _TinyHyperModel(keras_tuner.HyperModel):
  """A dense model whose width is searched; the `stop_at`-th fit kills the search."""

  def __init__(self, stop_at=None):
    super().__init__()
    self.stop_at, self.fits = stop_at, 0

  def build(self, hp):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(
        keras.layers.Dense(hp.Int('units', 2, 64))(inputs)))
    model.compile('adam', keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=['accuracy'])
    return model

  def fit(self, hp, model, *args, **kwargs):
    self.fits += 1
    if self.fits == self.stop_at:
      raise _KilledSearch
    x = np.random.default_rng(0).normal(size=(32, 4)).astype('float32')
    y = (x[:, 0] > 0).astype('int64')
    history = model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0)
    return {constants.VAL_ACCURACY: history.history[constants.VAL_ACCURACY][-1]}


class _KilledSearch(BaseException):
  """Stands for the process dying mid-trial (keras-tuner retries an Exception, not this)."""


def test_the_tuner_keeps_finished_trials(tmp_path):
  folder = str(tmp_path / 'search')
  with pytest.raises(_KilledSearch):
    tuner_module.make_tuner('random', _TinyHyperModel(stop_at=3), 3, 1, folder, 0).search()
  assert tuner_component.kept_trials(folder) == 2
  resumed = _TinyHyperModel()
  tuner = tuner_module.make_tuner('random', resumed, 3, 1, folder, 0)
  tuner.search()
  assert resumed.fits == 1  # only the cut trial ran again
  assert sorted(str(t.status) for t in tuner.oracle.trials.values()) == ['COMPLETED'] * 3


def test_a_search_state_cut_mid_write_starts_the_search_again(tmp_path):
  folder = tmp_path / 'search'
  (folder / 'search' / 'trial_0').mkdir(parents=True)
  (folder / 'search' / 'trial_0' / 'trial.json').write_text('{"status": "COMPLE')
  assert tuner_component.kept_trials(str(folder)) == 0
  assert not folder.exists()
