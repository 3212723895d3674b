"""Trainer module file: build the chosen model, train it (in one or two phases), export it.

TFX's Trainer calls `run_fn`. Everything it needs arrives in `fn_args.custom_config` (see
`trainer_custom_config`): the training config, the team's classes and the stored image size.
"""
import dataclasses
import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

from modules import augmentation, export, inputs, models, search_spaces, training, training_stats
from base import constants
from base.configs import TrainingConfig
from base.errors import UserError

# Keys of the Trainer's custom_config.
TRAINING = 'training'
CLASS_NAMES = 'class_names'
HYPERPARAMETERS_SOURCE = 'hyperparameters_source'  # 'config', 'tuner' or 'imported: PATH'

KERAS_MODEL_FILE = 'model.keras'  # in the ModelRun artifact


def trainer_custom_config(config: TrainingConfig, class_names: Sequence[str],
                          stored_image_size: int,
                          hyperparameters_source: str = 'config') -> Dict[str, Any]:
  return {TRAINING: dataclasses.asdict(config), CLASS_NAMES: list(class_names),
          constants.STORED_IMAGE_SIZE: int(stored_image_size),
          HYPERPARAMETERS_SOURCE: hyperparameters_source}


def with_hyperparameters(config: TrainingConfig, hyperparameters: Optional[Dict[str, Any]],
                         source: str) -> Tuple[TrainingConfig, Dict[str, Any]]:
  """One tuned/untuned path: the config with the tuned values when there are any.

  Returns the config to train with and the record of what was used and where it came from.
  """
  if not hyperparameters:
    return config, {'source': 'config', 'values': {}}
  import keras_tuner  # pylint: disable=g-import-not-at-top
  values = keras_tuner.HyperParameters.from_config(hyperparameters).values
  try:
    search_spaces.check_values(values, config.model, source)
  except ValueError as e:
    raise UserError(str(e)) from e
  return search_spaces.apply(config, values), {'source': source, 'values': dict(values)}


def with_model_defaults(config: TrainingConfig) -> TrainingConfig:
  """The config with the model's own optimizer, learning rate and layers to fine-tune where it
  leaves them None."""
  spec = models.get_spec(config.model)
  return dataclasses.replace(
      config, optimizer=config.optimizer or spec.optimizer,
      learning_rate=spec.learning_rate if config.learning_rate is None else config.learning_rate,
      fine_tune_layers=spec.fine_tune_layers if config.fine_tune_layers is None
      else config.fine_tune_layers)


def image_size_of(config: TrainingConfig) -> int:
  return config.image_size or models.get_spec(config.model).default_image_size


def weights_of(config: TrainingConfig) -> Optional[str]:
  """None for from-scratch models and --weights none; else 'imagenet' or a path."""
  if not models.get_spec(config.model).transfer or config.weights.lower() == 'none':
    return None
  return config.weights


def fine_tune_layers_of(config: TrainingConfig):
  """'all' or an int (None: the model's); from-scratch models always train every layer."""
  spec = models.get_spec(config.model)
  value = spec.fine_tune_layers if config.fine_tune_layers is None else config.fine_tune_layers
  if not spec.transfer or value == 'all':
    return 'all'
  try:
    return int(value)
  except ValueError:
    raise UserError(f"--fine-tune-layers {value!r}: use 0, a number of top layers, or 'all'"
                    ) from None


def build(config: TrainingConfig, num_classes: int, stored_image_size: int) -> keras.Model:
  """The uncompiled model of a training config (ValueError on a bad model setting)."""
  return models.build_model(
      config.model, image_size_of(config), num_classes, stored_image_size=stored_image_size,
      weights=weights_of(config), alpha=config.alpha, dropout=config.dropout, width=config.width)


def check_training_config(config: TrainingConfig, num_classes: int, stored_image_size: int,
                          build_model: bool = True) -> None:
  """Every check that can fail before training starts, as a UserError.

  With `build_model` it also builds the model once (weights file, depth for --fine-tune-layers):
  the runners' preflight does; `run_fn`, which builds the real model next, only re-checks the
  arguments (imported or tuned values may have changed them).
  """
  try:
    config = with_model_defaults(config)
    training.validate_training_args(
        batch_size=config.batch_size, learning_rate=config.learning_rate,
        weight_decay=config.weight_decay, label_smoothing=config.label_smoothing,
        epochs=config.epochs, warmup_epochs=config.warmup_epochs,
        early_stopping_patience=config.early_stopping_patience, optimizer=config.optimizer,
        schedule=config.schedule, augmentation=config.augment, precision=config.precision)
    training.validate_training_args(learning_rate=config.fine_tune_learning_rate)
    export.check_tta(config.tta)
    augmentation.check_cutout(config.cutout, stored_image_size)
    if config.head_epochs < 0:
      raise ValueError(f'--head-epochs {config.head_epochs}: must be 0 or more')
    if config.steps_per_epoch is not None and config.steps_per_epoch < 1:
      raise ValueError(f'--steps-per-epoch {config.steps_per_epoch}: must be 1 or more')
    if not 0 <= config.momentum <= 1:  # Keras' SGD refuses it only when training starts
      raise ValueError(f'--momentum {config.momentum}: must be between 0 and 1')
    if config.time_budget is not None and not config.time_budget > 0:
      raise ValueError(f'--time-budget {config.time_budget}: must be more than 0 minutes')
    fine_tune = fine_tune_layers_of(config)
    if build_model:
      model = build(config, num_classes, stored_image_size)
      models.set_fine_tune_layers(model, fine_tune)
  except UserError:
    raise
  except ValueError as e:
    raise UserError(str(e).splitlines()[0]) from e
  except Exception as e:  # pylint: disable=broad-except
    # Keras raises a bare Exception when it cannot download ImageNet weights (no internet).
    raise UserError(f'cannot build {config.model!r} with --weights {config.weights}: '
                    f'{(str(e).splitlines() or [type(e).__name__])[0]} (offline? pass --weights '
                    'PATH of a no-top .h5 file, or --weights none)') from e
  finally:
    keras.backend.clear_session()


def _phases(config: TrainingConfig) -> List[Tuple[Any, int, float]]:
  """(fine_tune_layers, epochs, learning rate) of each training phase.

  A transfer model that fine-tunes part of its backbone first trains its new head alone for
  `head_epochs` (so large random-head gradients do not wreck the pretrained features), then
  unfreezes the layers at the lower `fine_tune_learning_rate`.
  """
  fine_tune = fine_tune_layers_of(config)
  transfer = models.get_spec(config.model).transfer
  if transfer and fine_tune != 0 and config.head_epochs > 0:
    return [(0, config.head_epochs, config.learning_rate),
            (fine_tune, config.epochs, config.fine_tune_learning_rate)]
  return [(fine_tune, config.epochs, config.learning_rate)]


def _compile(model: keras.Model, config: TrainingConfig, learning_rate: float,
             total_steps: int, steps_per_epoch: int, decay_start: int = 0) -> training.LearningRate:
  """Compiles the model; returns its learning rate (a float or the schedule)."""
  warmup = int(round(config.warmup_epochs * steps_per_epoch)) if config.schedule == 'cosine' else 0
  schedule = training.make_schedule(config.schedule, learning_rate, total_steps,
                                    min(warmup, total_steps - 1), decay_start)
  model.compile(
      optimizer=training.make_optimizer(config.optimizer, schedule, config.weight_decay,
                                        momentum=config.momentum),
      loss=training.make_loss(config.label_smoothing),
      metrics=training.make_metrics(),
      jit_compile=config.jit)  # Keras 3's 'auto' would pick XLA, 8-10x slower on CPUs
  return schedule


ADAPT_IMAGES = 2048  # training images that set a model's data-dependent layers (`models.adapt`)


def _first_images(dataset: tf.data.Dataset, count: int) -> Iterator[np.ndarray]:
  """The image batches at the start of a dataset of (images, labels), until `count` images."""
  seen = 0
  for images, _ in dataset:
    yield images.numpy()
    seen += len(images)
    if seen >= count:
      return


def train(config: TrainingConfig, model: keras.Model, train_data: tf.data.Dataset,
          eval_data: tf.data.Dataset, steps_per_epoch: int, validation_steps: int,
          callbacks: Sequence[keras.callbacks.Callback] = (),
          time_budget: Optional[float] = None,
          backup: Optional['EpochBackup'] = None) -> training_stats.TrainingTimer:
  """Runs every phase of `_phases(config)` on the model; returns the timer of all of them.

  With `time_budget` (minutes; the Trainer passes the config's, the Tuner's trials none), a
  `training.TimeBudget` chooses the last phase's epochs, at most `config.epochs`, measured in its
  first epoch, during which the cosine decay waits; the timer then carries its record.
  With `backup` (the Trainer's), each phase resumes from its last saved epoch (`EpochBackup`).
  First, a model with data-dependent layers (airbench's whitening) sets them from the first
  `ADAPT_IMAGES` training images (`models.adapt`). Read outside the distribution strategy, the
  seeded training data starts with the same images on every worker, so every worker sets the
  same values.
  """
  config = with_model_defaults(config)
  timer = training_stats.TrainingTimer(config.batch_size)
  budget = training.TimeBudget(time_budget, timer) if time_budget else None
  if budget:
    budget.start()
  # Before any restore, so that a resumed run reads its training data as often as the first.
  models.adapt(model, _first_images(train_data, ADAPT_IMAGES))
  phases = _phases(config)
  epoch = 0
  for phase, (fine_tune, epochs, learning_rate) in enumerate(phases):
    models.set_fine_tune_layers(model, fine_tune)
    budgeted = budget is not None and phase == len(phases) - 1
    schedule = _compile(model, config, learning_rate, epochs * steps_per_epoch, steps_per_epoch,
                        decay_start=steps_per_epoch if budgeted else 0)
    if budgeted:
      budget.begin_phase(schedule, steps_per_epoch, epochs, epoch)
      callbacks = [*callbacks, budget]  # after the timer, whose measurements it reads
    if backup:
      backup.budget = budget if budgeted else None
    start = max(epoch, backup.restore(model, phase, timer)) if backup else epoch
    if budgeted and backup and backup.saved_decision:
      budget.resume(backup.saved_decision)  # the epochs the stopped run chose, not a new choice
    if start >= epoch + epochs:  # this phase had finished before the run was stopped
      epoch += epochs
      continue
    logging.info('Training %s: %d epochs at learning rate %g, fine_tune_layers=%s',
                 config.model, epochs, learning_rate, fine_tune)
    # A resumed fit skips the batches the stopped run had trained on, so that it sees the very
    # batches an uninterrupted training sees next (the input pipeline's work for them, once).
    data = train_data.skip((start - epoch) * steps_per_epoch) if start > epoch else train_data
    # Repeated: Keras 3 keeps one validation iterator across epochs when validation_steps is
    # given, so a one-pass dataset would leave every second epoch without validation.
    model.fit(data, validation_data=eval_data.repeat(), epochs=epoch + epochs,
              initial_epoch=start,
              steps_per_epoch=steps_per_epoch, validation_steps=validation_steps, verbose=2,
              callbacks=[timer, *([backup] if backup else []), *callbacks, *training.make_callbacks(
                  config.schedule, config.early_stopping_patience)])
    epoch += epochs
  if budget:
    timer.time_budget = budget.record()
  return timer


# ---------------------------------------------------------------- resuming a killed Trainer --

RESUME_DIR = '.resume'  # in the Trainer's folder of the pipeline root, beside its outputs
_WEIGHTS_FILE = 'state.weights.h5'  # the model's and the optimizer's variables
_STATE_FILE = 'state.json'  # the epoch reached and the timer's record of the epochs so far
_TIMER_FIELDS = ('epoch_times', 'train_times', 'steps', 'first_in_fit', 'logs', 'total_time')


def backup_folder(fn_args) -> str:
  """Where a Trainer execution keeps its per-epoch state: a folder that outlives the execution
  (TFX gives a retry new output folders), named by what makes two trainings the same: the input
  artifacts (their URIs), the custom_config (training config, classes, code fingerprint) and
  the hyperparameters. A retry of the same training finds it; any other training does not."""
  key = json.dumps({
      'train_files': fn_args.train_files, 'eval_files': fn_args.eval_files,
      'transform_graph': fn_args.transform_graph_path, 'custom_config': fn_args.custom_config,
      'hyperparameters': fn_args.hyperparameters}, sort_keys=True, default=str)
  node_dir = os.path.dirname(os.path.dirname(os.path.normpath(fn_args.model_run_dir)))
  return os.path.join(node_dir, RESUME_DIR, hashlib.sha256(key.encode()).hexdigest()[:16])


def _epoch_dirs(phase_dir: str) -> List[Tuple[int, str]]:
  """(epoch, folder) of the complete saved states of a phase, oldest first."""
  found = []
  for name in (os.listdir(phase_dir) if os.path.isdir(phase_dir) else []):
    if name.startswith('epoch-') and name[len('epoch-'):].isdigit():
      found.append((int(name[len('epoch-'):]), os.path.join(phase_dir, name)))
  return sorted(found)


def _fsync(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _seed_states(model: keras.Model) -> List[keras.Variable]:
  """The state variables of the model's `keras.random.SeedGenerator`s (Dropout's, say): among
  `model.variables`, not among the weights that `save_weights` writes. In the model's order:
  their names are numbered per process (`seed_generator_2`), so they are saved as a list."""
  weights = {id(v) for v in model.weights}
  return [v for v in model.variables if id(v) not in weights]


class EpochBackup(keras.callbacks.Callback):
  """The training state after every epoch, so that a Trainer killed mid-training resumes.

  Keras' BackupAndRestore writes its weights and its epoch number as two files in place: a kill
  between or during the two writes leaves a torn state that the retry would load. Here each
  epoch's state (weights with the optimizer's variables, the epoch, the timer's record) is written
  to a temporary folder, synced, and renamed to `phase-P/epoch-NNNN` (a rename is atomic), then
  older states are removed: the newest complete folder is always a consistent state. `train`
  calls `restore` before each phase's fit; `remove` deletes everything once the model is exported.
  The state also holds the models' random-number states (a Dropout layer's `SeedGenerator`,
  which `save_weights` leaves out), and `train` skips the batches already trained on: a resumed
  one-phase training replays the uninterrupted one (docs/reliability.md). Not restored:
  EarlyStopping's and ReduceLROnPlateau's counters.
  """

  def __init__(self, folder: str):
    super().__init__()
    self.folder = folder
    self.resumed_from: Optional[int] = None  # the epoch training resumed after, if it did
    self.budget: Optional[training.TimeBudget] = None  # `train` sets it for the budgeted phase
    self.saved_decision: Optional[Dict[str, Any]] = None  # the stopped run's budget decision
    self._phase = 0
    self._timer: Optional[training_stats.TrainingTimer] = None
    self._fit_started = 0.0

  def _phase_dir(self) -> str:
    return os.path.join(self.folder, f'phase-{self._phase}')

  def restore(self, model: keras.Model, phase: int, timer: training_stats.TrainingTimer) -> int:
    """Loads the phase's newest saved state into the compiled model and the timer; returns the
    epoch to continue from (0 when nothing was saved)."""
    self._phase, self._timer = phase, timer
    saved = _epoch_dirs(self._phase_dir())
    if not saved:
      return 0
    epoch, path = saved[-1]
    if not model.optimizer.built:
      model.optimizer.build(model.trainable_variables)
    model.load_weights(os.path.join(path, _WEIGHTS_FILE))
    with open(os.path.join(path, _STATE_FILE)) as f:
      state = json.load(f)
    for variable, value in zip(_seed_states(model), state.get('seed_states', [])):
      variable.assign(value)
    for field in _TIMER_FIELDS:
      setattr(timer, field, state['timer'][field])
    self.saved_decision = state.get('time_budget') or None
    self.resumed_from = epoch
    print(f'Trainer: resuming from epoch {epoch} (saved by a run that was stopped; {path})',
          flush=True)
    return epoch

  def on_train_begin(self, logs=None):
    self._fit_started = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    phase_dir = self._phase_dir()
    os.makedirs(phase_dir, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix='.saving-', dir=phase_dir)
    self.model.save_weights(os.path.join(temporary, _WEIGHTS_FILE))
    timer = {field: getattr(self._timer, field) for field in _TIMER_FIELDS}
    timer['total_time'] += time.perf_counter() - self._fit_started  # this fit, so far
    with open(os.path.join(temporary, _STATE_FILE), 'w') as f:
      json.dump({'epoch': epoch + 1, 'timer': timer,
                 'seed_states': [v.numpy().tolist() for v in _seed_states(self.model)],
                 'time_budget': self.budget.decision if self.budget else None}, f)
    for name in (_WEIGHTS_FILE, _STATE_FILE):
      _fsync(os.path.join(temporary, name))  # on disk before the rename makes them the state
    os.rename(temporary, os.path.join(phase_dir, f'epoch-{epoch + 1:04d}'))
    _fsync(phase_dir)
    for _, older in _epoch_dirs(phase_dir)[:-1]:
      shutil.rmtree(older, ignore_errors=True)

  def remove(self) -> None:
    """Deletes every saved state of this training (its model is exported)."""
    shutil.rmtree(self.folder, ignore_errors=True)


# ------------------------------------------------------------------------- tf.distribute --

class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
  """TensorFlow's, with the `reduce` that Keras 3's `fit` expects of it (keras-team/keras#20585).

  Keras 3 (3.6 here) calls `reduce` on a whole (images, labels) batch before the first step, which
  TensorFlow's MultiWorkerMirroredStrategy refuses ("Attempt to convert a value (PerReplica..."),
  and averages each step's scalar logs with `axis=0` ("Invalid reduction dimension 0 for input
  with 0 dimensions"). This one reduces each value of a structure on its own, scalars across the
  replicas only; anything else is TensorFlow's reduce unchanged.
  """

  def reduce(self, reduce_op, value, axis):
    def one(v):
      local = self.experimental_local_results(v)[0]
      rank = getattr(local, 'shape', tf.TensorShape(None)).rank
      return super(MultiWorkerMirroredStrategy, self).reduce(
          reduce_op, v, None if rank == 0 else axis)
    return tf.nest.map_structure(one, value)


def make_strategy() -> tf.distribute.Strategy:
  """How the Trainer spreads training over devices.

  MultiWorkerMirroredStrategy when TF_CONFIG names more than one machine (Vertex AI Training sets
  it for a multi-replica job); MirroredStrategy when this machine sees several GPUs; otherwise the
  default strategy (one device). Under each, `--batch-size` is the global batch, which Keras
  splits between the replicas, so the learning rate, set per global batch, stays what it is.
  Call it before any TensorFlow op runs: MultiWorkerMirroredStrategy configures the runtime's
  collective ops, which TensorFlow refuses once it has started ("must be configured at program
  startup").
  """
  cluster = json.loads(os.environ.get('TF_CONFIG') or '{}').get('cluster', {})
  if sum(len(cluster.get(role, ())) for role in ('chief', 'worker')) > 1:
    return MultiWorkerMirroredStrategy()
  if len(tf.config.list_logical_devices('GPU')) > 1:
    return tf.distribute.MirroredStrategy()
  return tf.distribute.get_strategy()


def distribution_stats(strategy: tf.distribute.Strategy) -> Dict[str, Any]:
  """The strategy's record in training_stats.json."""
  return {'strategy': type(strategy).__name__.lstrip('_'),
          'num_replicas_in_sync': int(strategy.num_replicas_in_sync)}


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """The dataset with DATA auto-sharding, for MultiWorkerMirroredStrategy (Keras distributes it).

  Every worker reads, parses and caches the whole split and keeps its part of each global batch,
  so the workers together see exactly what one machine sees, whatever the number and sizes of the
  files. FILE sharding (AUTO's first choice) would give each worker whole files: a split in fewer
  files than workers fails, and files of unequal sizes are repeated unequally. DATA needs the same
  element order on every worker, which the seeded shuffle and deterministic reads give.
  """
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return dataset.with_options(options)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process keeps what it saves: yes unless it is a non-chief worker of a
  multi-worker training (TF_CONFIG's chief, or worker 0 when it names none, is the chief)."""
  return bool(strategy.extended.should_checkpoint)


@dataclasses.dataclass(frozen=True)
class Outputs:
  """Where this Trainer process writes. Every worker of a multi-worker training must save (the
  saves read distributed variables together), but only the chief's saves are the Trainer's
  outputs: the others write to `scratch`, a temporary folder deleted at the end."""
  serving_model_dir: str
  model_run_dir: str
  backup_folder: str
  scratch: Optional[str] = None  # a non-chief worker's, deleted at the end


def outputs_for(fn_args, strategy: tf.distribute.Strategy) -> Outputs:
  """The Trainer's folders for the chief; temporary ones for another worker, which resumes from
  a copy of the chief's saved epochs (all workers must continue from the same epoch)."""
  if is_chief(strategy):
    return Outputs(fn_args.serving_model_dir, fn_args.model_run_dir, backup_folder(fn_args))
  scratch = tempfile.mkdtemp(prefix='trainer-worker-')
  backups = os.path.join(scratch, RESUME_DIR)
  if os.path.isdir(backup_folder(fn_args)):
    shutil.copytree(backup_folder(fn_args), backups)
  return Outputs(os.path.join(scratch, 'serving_model'), os.path.join(scratch, 'model_run'),
                 backups, scratch)


def wait_for_the_chief(strategy: tf.distribute.Strategy) -> None:
  """Returns once every worker has called it (an all-reduce; no-op on one machine): called after
  the chief's last write, so no worker leaves before the model is exported. TFX's Trainer checks
  on every worker that the serving model exists, and the workers share the chief's folders."""
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)


def _versions() -> Dict[str, str]:
  import tfx  # pylint: disable=g-import-not-at-top
  return {'python': platform.python_version(), 'tensorflow': tf.__version__,
          'keras': keras.__version__, 'tfx': tfx.__version__,
          'tensorflow_transform': tft.__version__}


# TFX Trainer calls this.
def run_fn(fn_args) -> None:
  """Trains the configured model on the train split (transformed in tf.data) and exports it."""
  strategy = make_strategy()  # first: MultiWorkerMirroredStrategy must precede any TensorFlow op
  custom = fn_args.custom_config
  config, hyperparameters = with_hyperparameters(
      TrainingConfig(**custom[TRAINING]), fn_args.hyperparameters,
      custom.get(HYPERPARAMETERS_SOURCE, 'config'))
  class_names, stored_size = custom[CLASS_NAMES], custom[constants.STORED_IMAGE_SIZE]
  check_training_config(config, len(class_names), stored_size, build_model=False)
  config = with_model_defaults(config)  # recorded as trained, in the stats and provenance
  keras.utils.set_random_seed(config.seed)
  with training.precision_policy(config.precision) as precision:
    logging.info('Precision: %s (--precision %s)', precision, config.precision)
    _train_and_export(fn_args, config, hyperparameters, class_names, stored_size, strategy)


def _train_and_export(fn_args, config: TrainingConfig, hyperparameters: Dict[str, Any],
                      class_names: Sequence[str], stored_size: int,
                      strategy: tf.distribute.Strategy) -> None:
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  feature_spec = tf_transform_output.transformed_feature_spec()
  raw = inputs.raw_examples(tf_transform_output)  # ExampleGen's examples, transformed in tf.data
  num_train = inputs.count_examples(fn_args.train_files)
  num_eval = inputs.count_examples(fn_args.eval_files)
  steps_per_epoch = config.steps_per_epoch or math.ceil(num_train / config.batch_size)
  train_data = inputs.make_dataset(fn_args.train_files, feature_spec, config.batch_size,
                                   True, num_train, config.augment, config.seed, raw=raw,
                                   cutout=config.cutout)
  eval_data = inputs.make_dataset(fn_args.eval_files, feature_spec, config.batch_size,
                                  False, num_eval, raw=raw)

  logging.info('Distribution: %s', distribution_stats(strategy))
  out = outputs_for(fn_args, strategy)  # a non-chief worker's saves go to a temporary folder
  train_data, eval_data = shard_by_data(train_data), shard_by_data(eval_data)
  with strategy.scope():  # the model's and the optimizer's variables on every replica
    model = build(config, len(class_names), stored_size)
    started = time.time()
    backup = EpochBackup(out.backup_folder)
    timer = train(config, model, train_data, eval_data, steps_per_epoch,
                  math.ceil(num_eval / config.batch_size), callbacks=[
        keras.callbacks.TensorBoard(log_dir=os.path.join(out.model_run_dir, 'logs'))],
                  time_budget=config.time_budget, backup=backup)
  logging.info('Training took %.0f s', time.time() - started)

  stats = training_stats.collect(timer, model, extra={
      'model': config.model, 'image_size': image_size_of(config),
      'train_examples': num_train, 'eval_examples': num_eval,
      'hyperparameters': hyperparameters, 'training_config': dataclasses.asdict(config),
      'resumed_from_epoch': backup.resumed_from, 'distribution': distribution_stats(strategy)})
  print(training_stats.format_summary(stats), flush=True)
  provenance = {
      constants.TRAINING_STATS_FILE: stats,
      constants.CLASSES_FILE: {'class_names': class_names, constants.STORED_IMAGE_SIZE: stored_size},
      constants.TRAINING_CONFIG_FILE: dataclasses.asdict(config),
      constants.VERSIONS_FILE: _versions(),
  }
  export.export_serving_model(model, tf_transform_output, class_names,
                              out.serving_model_dir, provenance, config.tta)
  # The Keras model itself, for notebooks, further fine-tuning and the export-consistency test.
  model.save(os.path.join(out.model_run_dir, KERAS_MODEL_FILE))
  # Next to the model too, where the report and the notebooks look for it.
  export.write_provenance(os.path.dirname(out.serving_model_dir),
                          {constants.TRAINING_STATS_FILE: stats})
  backup.remove()  # the model is out: a retry from here on would be a new training
  if out.scratch:
    shutil.rmtree(out.scratch, ignore_errors=True)
  wait_for_the_chief(strategy)
