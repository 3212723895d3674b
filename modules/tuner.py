"""Tuner module file: KerasTuner searches the chosen model family's hyperparameters.

TFX's Tuner calls `tuner_fn`. Each trial builds and trains the model through the Trainer's own
code (`trainer.build`, `trainer.train`, `inputs.make_dataset`): one code path, Keras 3 throughout,
which is what keras-tuner 1.4.7 requires (it rejects tf_keras models). The Transform graph (a
Keras-2 object of tensorflow-transform) never enters a tuned model: Transform's output is read
already materialised, and the graph only joins the model in the exported tf.Module.
"""
import dataclasses
import hashlib
import json
import math
import os
import time
from typing import Any, Dict

import keras
import keras_tuner
import tensorflow_transform as tft
from absl import logging
from tfx.components.tuner.component import TunerFnResult

from base import constants
from modules import inputs, search_spaces, trainer, training
from base.configs import TrainingConfig, TuningConfig
from base.errors import UserError

# Keys of the Tuner's custom_config (besides trainer.trainer_custom_config's).
TUNING = 'tuning'
TUNERS = ('random', 'hyperband', 'bayesian')
BEST_HYPERPARAMETERS_FILE = 'best_hyperparameters.txt'  # what TFX's Tuner writes


class PipelineHyperModel(keras_tuner.HyperModel):
  """build(hp) and fit(hp, model) over the Trainer's code, with hp values in a TrainingConfig."""

  def __init__(self, base: TrainingConfig, num_classes: int, stored_image_size: int,
               fn_args, tf_transform_output: tft.TFTransformOutput):
    super().__init__(name=base.model)
    self._base = base
    self._num_classes = num_classes
    self._stored_size = stored_image_size
    self._fn_args = fn_args
    self._feature_spec = tf_transform_output.transformed_feature_spec()
    self._raw = inputs.raw_examples(tf_transform_output)  # ExampleGen's examples
    self._num_train = inputs.count_examples(fn_args.train_files)
    self._num_eval = inputs.count_examples(fn_args.eval_files)

  def config_for(self, hp: keras_tuner.HyperParameters) -> TrainingConfig:
    search_spaces.define(hp, self._base.model)
    return search_spaces.apply(self._base, hp.values)

  def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
    return trainer.build(self.config_for(hp), self._num_classes, self._stored_size)

  def fit(self, hp, model, *args, epochs=None, initial_epoch=0, **kwargs) -> Dict[str, float]:
    # Hyperband passes `epochs` and resumes from `initial_epoch`; the other tuners use --tuner-epochs.
    config = dataclasses.replace(self.config_for(hp),
                                 epochs=max((epochs or self._base.epochs) - initial_epoch, 1))
    keras.utils.set_random_seed(config.seed)
    train_data = inputs.make_dataset(self._fn_args.train_files, self._feature_spec,
                                     config.batch_size,
                                     True, self._num_train, config.augment, config.seed,
                                     raw=self._raw, cutout=config.cutout)
    eval_data = inputs.make_dataset(self._fn_args.eval_files, self._feature_spec,
                                    config.batch_size,
                                    False, self._num_eval, raw=self._raw)
    steps = config.steps_per_epoch or math.ceil(self._num_train / config.batch_size)
    started = time.time()
    timer = trainer.train(config, model, train_data, eval_data, steps,
                          math.ceil(self._num_eval / config.batch_size),
                          callbacks=kwargs.get('callbacks', ()))
    val_accuracy = [log.get(constants.VAL_ACCURACY, 0.0) for log in timer.logs]
    return {constants.VAL_ACCURACY: max(val_accuracy), 'val_loss': timer.logs[-1].get('val_loss'),
            constants.TRIAL_SECONDS: time.time() - started}


def check_tuning_config(tuning: TuningConfig, model: str) -> None:
  """Every tuning setting that can be wrong, as a UserError, before any trial runs."""
  if tuning.tuner is not None and tuning.tuner not in TUNERS:
    raise UserError(f'--tune {tuning.tuner}: unknown tuner; use one of {", ".join(TUNERS)}')
  if tuning.tuner_trials < 1:
    raise UserError(f'--tuner-trials {tuning.tuner_trials}: must be 1 or more')
  if tuning.tuner_epochs < 1:
    raise UserError(f'--tuner-epochs {tuning.tuner_epochs}: must be 1 or more')
  if tuning.tuner and tuning.hyperparameters:
    raise UserError('--tune and --hyperparameters exclude each other: tune, or reuse a search')
  if tuning.hyperparameters:
    values = keras_tuner.HyperParameters.from_config(
        read_hyperparameters(tuning.hyperparameters)).values
    try:
      search_spaces.check_values(values, model, f'--hyperparameters {tuning.hyperparameters}')
    except ValueError as e:
      raise UserError(str(e)) from e


def hyperparameters_file(path: str) -> str:
  """best_hyperparameters.txt given itself or the folder (a Tuner's output) holding it."""
  return os.path.join(path, BEST_HYPERPARAMETERS_FILE) if os.path.isdir(path) else path


def read_hyperparameters(path: str) -> Dict[str, Any]:
  """The KerasTuner HyperParameters config saved by a TFX Tuner (UserError when unreadable)."""
  file_path = hyperparameters_file(path)
  try:
    with open(file_path) as f:
      config = json.load(f)
    keras_tuner.HyperParameters.from_config(config)
  except OSError as e:
    raise UserError(f'--hyperparameters {path}: {e.strerror}') from e
  except (ValueError, KeyError, TypeError) as e:
    raise UserError(f'--hyperparameters {path}: not a saved KerasTuner search result ({e})') from e
  return config


def stage_hyperparameters(path: str, output_dir: str) -> str:
  """Copies a best_hyperparameters.txt into a folder of its own under the output dir (TFX reads
  the only file of a HyperParameters artifact); returns that folder, named by content hash."""
  with open(hyperparameters_file(path), 'rb') as f:
    content = f.read()
  folder = os.path.join(output_dir, 'imported_hyperparameters',
                        hashlib.sha256(content).hexdigest()[:16])
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, BEST_HYPERPARAMETERS_FILE), 'wb') as f:
    f.write(content)
  return folder


def make_tuner(name: str, hypermodel: keras_tuner.HyperModel, trials: int, epochs: int,
               directory: str, seed: int) -> keras_tuner.Tuner:
  """A KerasTuner tuner maximising validation accuracy (on the `eval` split). It reloads the
  trials a stopped search left in `directory` (the Tuner keeps one per search: its
  `search_folder`), so finished trials are not run again."""
  common = dict(hypermodel=hypermodel, directory=directory, project_name='search', seed=seed,
                objective=keras_tuner.Objective(constants.VAL_ACCURACY, direction='max'),
                overwrite=False)
  if name == 'random':
    return keras_tuner.RandomSearch(max_trials=trials, **common)
  if name == 'bayesian':
    return keras_tuner.BayesianOptimization(max_trials=trials, **common)
  if name == 'hyperband':
    # Hyperband sizes its own brackets from max_epochs; --tuner-trials does not apply.
    return keras_tuner.Hyperband(max_epochs=epochs, factor=3, hyperband_iterations=1, **common)
  raise ValueError(f'unknown tuner {name!r}; use one of {", ".join(TUNERS)}')


# TFX Tuner calls this.
def tuner_fn(fn_args) -> TunerFnResult:
  """The tuner and its search arguments for the configured model family."""
  custom = fn_args.custom_config
  base = TrainingConfig(**custom[trainer.TRAINING])
  tuning = custom[TUNING]
  base = dataclasses.replace(base, epochs=tuning['tuner_epochs'])
  training.set_precision(base.precision)  # trials train like the Trainer will
  hypermodel = PipelineHyperModel(
      base, len(custom[trainer.CLASS_NAMES]), custom[constants.STORED_IMAGE_SIZE], fn_args,
      tft.TFTransformOutput(fn_args.transform_graph_path))
  tuner = make_tuner(tuning['tuner'], hypermodel, tuning['tuner_trials'], tuning['tuner_epochs'],
                     fn_args.working_dir, base.seed)
  logging.info('Tuning %s with %s', base.model, tuning['tuner'])
  return TunerFnResult(tuner=tuner, fit_kwargs={})
