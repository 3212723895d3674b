"""Trainer module file: build the chosen model, train it (in one or two phases), export it.

TFX's Trainer calls `run_fn`. Everything it needs arrives in `fn_args.custom_config` (see
`trainer_custom_config`): the training config, the team's classes and the stored image size.
"""
import dataclasses
import math
import os
import platform
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import keras
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

from modules import export, inputs, models, search_spaces, training, training_stats
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
  """The config with the model's own optimizer and learning rate where it leaves them None."""
  spec = models.get_spec(config.model)
  return dataclasses.replace(
      config, optimizer=config.optimizer or spec.optimizer,
      learning_rate=spec.learning_rate if config.learning_rate is None else config.learning_rate)


def image_size_of(config: TrainingConfig) -> int:
  return config.image_size or models.get_spec(config.model).default_image_size


def weights_of(config: TrainingConfig) -> Optional[str]:
  """None for from-scratch models and --weights none; else 'imagenet' or a path."""
  if not models.get_spec(config.model).transfer or config.weights.lower() == 'none':
    return None
  return config.weights


def fine_tune_layers_of(config: TrainingConfig):
  """'all' or an int; from-scratch models always train every layer."""
  if not models.get_spec(config.model).transfer or config.fine_tune_layers == 'all':
    return 'all'
  try:
    return int(config.fine_tune_layers)
  except ValueError:
    raise UserError(f"--fine-tune-layers {config.fine_tune_layers!r}: use 0, a number of top "
                    "layers, or 'all'") from None


def build(config: TrainingConfig, num_classes: int, stored_image_size: int) -> keras.Model:
  """The uncompiled model of a training config (ValueError on a bad model setting)."""
  return models.build_model(
      config.model, image_size_of(config), num_classes, stored_image_size=stored_image_size,
      weights=weights_of(config), alpha=config.alpha, dropout=config.dropout)


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
    if config.head_epochs < 0:
      raise ValueError(f'--head-epochs {config.head_epochs}: must be 0 or more')
    if config.steps_per_epoch is not None and config.steps_per_epoch < 1:
      raise ValueError(f'--steps-per-epoch {config.steps_per_epoch}: must be 1 or more')
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
             total_steps: int, steps_per_epoch: int) -> None:
  warmup = int(round(config.warmup_epochs * steps_per_epoch)) if config.schedule == 'cosine' else 0
  schedule = training.make_schedule(config.schedule, learning_rate, total_steps,
                                    min(warmup, total_steps - 1))
  model.compile(
      optimizer=training.make_optimizer(config.optimizer, schedule, config.weight_decay,
                                        momentum=config.momentum),
      loss=training.make_loss(config.label_smoothing),
      metrics=training.make_metrics(),
      jit_compile=config.jit)  # Keras 3's 'auto' would pick XLA, 8-10x slower on CPUs


def train(config: TrainingConfig, model: keras.Model, train_data: tf.data.Dataset,
          eval_data: tf.data.Dataset, steps_per_epoch: int, validation_steps: int,
          callbacks: Sequence[keras.callbacks.Callback] = ()) -> training_stats.TrainingTimer:
  """Runs every phase of `_phases(config)` on the model; returns the timer of all of them."""
  config = with_model_defaults(config)
  timer = training_stats.TrainingTimer(config.batch_size)
  epoch = 0
  for fine_tune, epochs, learning_rate in _phases(config):
    models.set_fine_tune_layers(model, fine_tune)
    _compile(model, config, learning_rate, epochs * steps_per_epoch, steps_per_epoch)
    logging.info('Training %s: %d epochs at learning rate %g, fine_tune_layers=%s',
                 config.model, epochs, learning_rate, fine_tune)
    model.fit(train_data, validation_data=eval_data, epochs=epoch + epochs, initial_epoch=epoch,
              steps_per_epoch=steps_per_epoch, validation_steps=validation_steps, verbose=2,
              callbacks=[timer, *callbacks, *training.make_callbacks(
                  config.schedule, config.early_stopping_patience)])
    epoch += epochs
  return timer


def _versions() -> Dict[str, str]:
  import tfx  # pylint: disable=g-import-not-at-top
  return {'python': platform.python_version(), 'tensorflow': tf.__version__,
          'keras': keras.__version__, 'tfx': tfx.__version__,
          'tensorflow_transform': tft.__version__}


# TFX Trainer calls this.
def run_fn(fn_args) -> None:
  """Trains the configured model on the transformed train split and exports it for serving."""
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
    _train_and_export(fn_args, config, hyperparameters, class_names, stored_size)


def _train_and_export(fn_args, config: TrainingConfig, hyperparameters: Dict[str, Any],
                      class_names: Sequence[str], stored_size: int) -> None:
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  feature_spec = tf_transform_output.transformed_feature_spec()
  num_train = inputs.count_examples(fn_args.train_files)
  num_eval = inputs.count_examples(fn_args.eval_files)
  steps_per_epoch = config.steps_per_epoch or math.ceil(num_train / config.batch_size)
  train_data = inputs.make_dataset(fn_args.train_files, feature_spec, config.batch_size,
                                   True, num_train, config.augment, config.seed)
  eval_data = inputs.make_dataset(fn_args.eval_files, feature_spec, config.batch_size,
                                  False, num_eval)

  model = build(config, len(class_names), stored_size)
  started = time.time()
  timer = train(config, model, train_data, eval_data, steps_per_epoch,
                math.ceil(num_eval / config.batch_size), callbacks=[
      keras.callbacks.TensorBoard(log_dir=os.path.join(fn_args.model_run_dir, 'logs'))])
  logging.info('Training took %.0f s', time.time() - started)

  stats = training_stats.collect(timer, model, extra={
      'model': config.model, 'image_size': image_size_of(config),
      'train_examples': num_train, 'eval_examples': num_eval,
      'hyperparameters': hyperparameters, 'training_config': dataclasses.asdict(config)})
  print(training_stats.format_summary(stats), flush=True)
  provenance = {
      constants.TRAINING_STATS_FILE: stats,
      constants.CLASSES_FILE: {'class_names': class_names, constants.STORED_IMAGE_SIZE: stored_size},
      constants.TRAINING_CONFIG_FILE: dataclasses.asdict(config),
      constants.VERSIONS_FILE: _versions(),
  }
  export.export_serving_model(model, tf_transform_output, class_names,
                              fn_args.serving_model_dir, provenance, config.tta)
  # The Keras model itself, for notebooks, further fine-tuning and the export-consistency test.
  model.save(os.path.join(fn_args.model_run_dir, KERAS_MODEL_FILE))
  # Next to the model too, where the report and the notebooks look for it.
  export.write_provenance(os.path.dirname(fn_args.serving_model_dir),
                          {constants.TRAINING_STATS_FILE: stats})
