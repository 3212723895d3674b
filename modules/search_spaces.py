"""Hyperparameter search spaces, one per model family, and how tuned values become a config.

Every hyperparameter is named after the `TrainingConfig` field it sets, so applying tuned values
is `dataclasses.replace(config, **values)`. A `family` hyperparameter (fixed) records which
space the values came from, so values tuned for a transfer model are never applied to a
from-scratch one.
"""
import dataclasses
from typing import Any, Dict, Mapping

import keras_tuner

from modules import models
from modules import training
from base.configs import TrainingConfig

FAMILY = 'family'
SCRATCH, TRANSFER = 'from_scratch', 'transfer'
_TUNER_INTERNAL = 'tuner/'  # Hyperband's own bookkeeping values


def family_of(model: str) -> str:
  return TRANSFER if models.get_spec(model).transfer else SCRATCH


def define(hp: keras_tuner.HyperParameters, model: str) -> None:
  """Registers the search space of `model`'s family on `hp` (idempotent)."""
  family = family_of(model)
  hp.Fixed(FAMILY, family)
  hp.Float('learning_rate', 1e-4, 3e-1, sampling='log')
  hp.Choice('optimizer', list(training.OPTIMIZERS))
  hp.Choice('batch_size', [32, 64, 128, 256])
  if 'dropout' in models.builder_arguments(model):
    hp.Float('dropout', 0.0, 0.5, step=0.1)
  hp.Float('weight_decay', 1e-5, 1e-2, sampling='log')
  hp.Choice('augment', ['none', 'basic', 'strong'])
  if family == TRANSFER:
    # Top-K layers of the backbone that fine-tune ('0': frozen feature extractor).
    hp.Choice('fine_tune_layers', ['0', '10', '20', '40', 'all'])


def space_of(model: str) -> keras_tuner.HyperParameters:
  hp = keras_tuner.HyperParameters()
  define(hp, model)
  return hp


def check_values(values: Mapping[str, Any], model: str, source: str) -> None:
  """Refuses hyperparameters of another family, unknown names and values outside the space."""
  family = family_of(model)
  if values.get(FAMILY) != family:
    raise ValueError(f'{source}: hyperparameters of the {values.get(FAMILY)!r} family cannot '
                     f'train {model!r} ({family} family)')
  space = space_of(model)
  known = {p.name: p for p in space.space}
  for name, value in values.items():
    if name == FAMILY or name.startswith(_TUNER_INTERNAL):
      continue
    if name not in known:
      raise ValueError(f'{source}: unknown hyperparameter {name!r}')
    param = known[name]
    if isinstance(param, keras_tuner.engine.hyperparameters.Choice):
      if value not in param.values:
        raise ValueError(f'{source}: {name}={value!r} is not one of {param.values}')
    elif hasattr(param, 'min_value') and not param.min_value <= value <= param.max_value:
      raise ValueError(f'{source}: {name}={value} is outside [{param.min_value}, '
                       f'{param.max_value}]')


def apply(config: TrainingConfig, values: Mapping[str, Any]) -> TrainingConfig:
  """The config with every tuned value that names one of its fields."""
  fields = {f.name for f in dataclasses.fields(TrainingConfig)}
  updates: Dict[str, Any] = {k: v for k, v in values.items() if k in fields}
  return dataclasses.replace(config, **updates)
