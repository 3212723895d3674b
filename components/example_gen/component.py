"""The CIFAR-100 ExampleGen component: a file-based ExampleGen with our own splitting executor.

It keeps TFX's FileBasedDriver, so the source files are fingerprinted and a changed archive or
image folder invalidates the cache, and records the team's classes as execution properties that
ML Metadata shows for every run.
"""
import json
import os
from typing import Sequence

from tfx import types
from tfx.components.example_gen import driver
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.example_gen import executor
from base import constants


class Cifar100ExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
  PARAMETERS = {
      **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
      executor.SOURCE: ExecutionParameter(type=str),
      executor.SOURCE_PATH: ExecutionParameter(type=str),
      executor.CLASS_NAMES: ExecutionParameter(type=str),
      executor.SOURCE_IDS: ExecutionParameter(type=str),
      executor.COARSE_NAMES: ExecutionParameter(type=str),
      executor.SPLIT_SEED: ExecutionParameter(type=int),
      executor.EVAL_FRACTION: ExecutionParameter(type=float),
      executor.TEST_FRACTION: ExecutionParameter(type=float),
      executor.TRUST_DATA: ExecutionParameter(type=int),
  }
  OUTPUTS = {
      standard_component_specs.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
  }


def _input_config(source: str, source_path: str) -> example_gen_pb2.Input:
  """The three splits, each with a file pattern that the driver fingerprints for caching."""
  if source == constants.SOURCE_CIFAR_ARCHIVE:
    patterns = [os.path.basename(source_path)] * 3
  elif source == constants.SOURCE_CIFAR_FOLDER:
    patterns = ['train', 'train', 'test']
  else:
    has_test = os.path.isdir(os.path.join(source_path, constants.TEST_SPLIT))
    patterns = ['train/*/*', 'train/*/*', 'test/*/*' if has_test else 'train/*/*']
  return example_gen_pb2.Input(splits=[
      example_gen_pb2.Input.Split(name=name, pattern=pattern)
      for name, pattern in zip(constants.SPLITS, patterns)
  ])


class Cifar100ExampleGen(base_beam_component.BaseBeamComponent):
  """Reads CIFAR-100 (archive or extracted folder) or an image folder; writes train/eval/test."""

  SPEC_CLASS = Cifar100ExampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
  DRIVER_CLASS = driver.FileBasedDriver

  def __init__(self, source: str, source_path: str, class_names: Sequence[str],
               source_ids: Sequence[int], coarse_names: Sequence[str], split_seed: int,
               eval_fraction: float, test_fraction: float, trust_data: bool = False):
    """Args mirror `base.configs.DataConfig` after `pipeline.data.resolve_data`."""
    input_base = (os.path.dirname(source_path)
                  if source == constants.SOURCE_CIFAR_ARCHIVE else source_path)
    spec = Cifar100ExampleGenSpec(
        input_base=input_base,
        input_config=_input_config(source, source_path),
        output_config=example_gen_pb2.Output(),
        output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
        output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        examples=types.Channel(type=standard_artifacts.Examples),
        **{
            executor.SOURCE: source,
            executor.SOURCE_PATH: source_path,
            executor.CLASS_NAMES: json.dumps(list(class_names)),
            executor.SOURCE_IDS: json.dumps([int(i) for i in source_ids]),
            executor.COARSE_NAMES: json.dumps(list(coarse_names)),
            executor.SPLIT_SEED: int(split_seed),
            executor.EVAL_FRACTION: float(eval_fraction),
            executor.TEST_FRACTION: float(test_fraction),
            executor.TRUST_DATA: int(bool(trust_data)),
        })
    super().__init__(spec=spec)

