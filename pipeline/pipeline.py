"""`create_pipeline(config)`: the one definition of the pipeline graph, for every runner."""
import json
import os
from typing import List, Optional

from tfx import v1 as tfx

from components.data_validation import CuratedSchemaGen, ValidationGate
from components.example_gen.component import Cifar100ExampleGen
from pipeline.configs import DataConfig, PipelineConfig


SETUP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'setup.py')


def beam_pipeline_args(config: PipelineConfig) -> List[str]:
  """DirectRunner in-process, or multi_processing with --beam-workers N workers.

  `--setup_file` names our package for remote Beam workers, and spares TFX from building an
  ephemeral TFX package before every Beam step (1.5 s each).
  """
  workers = config.data.beam_workers
  mode = (['--direct_running_mode=multi_processing', f'--direct_num_workers={workers}']
          if workers > 0 else ['--direct_running_mode=in_memory', '--direct_num_workers=1'])
  return mode + [f'--setup_file={SETUP_FILE}']


def make_example_gen(data: DataConfig) -> Cifar100ExampleGen:
  """The ExampleGen for a data config resolved by `pipeline.data.resolve_data`."""
  if not data.class_names:
    raise ValueError('the data config is not resolved (pipeline.data.resolve_data)')
  return Cifar100ExampleGen(
      source=data.source, source_path=data.source_path, class_names=data.class_names,
      source_ids=data.fine_label_ids, coarse_names=data.coarse_names, split_seed=data.team_seed,
      eval_fraction=data.eval_fraction, test_fraction=data.test_fraction,
      trust_data=data.trust_data)


def create_pipeline(config: PipelineConfig,
                    metadata_connection_config: Optional[object] = None) -> tfx.dsl.Pipeline:
  """The pipeline's components in DAG order, for a config resolved by `pipeline.data`."""
  data = config.data
  example_gen = make_example_gen(data)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.SchemaGen(
      statistics=statistics_gen.outputs['statistics'], infer_feature_shape=True)
  curated_schema = CuratedSchemaGen(
      schema=schema_gen.outputs['schema'], class_names=json.dumps(list(data.class_names)))
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'],
      schema=curated_schema.outputs['curated_schema'])
  validation_gate = ValidationGate(anomalies=example_validator.outputs['anomalies'])
  components = [
      example_gen, statistics_gen, schema_gen, curated_schema, example_validator, validation_gate
  ]
  return tfx.dsl.Pipeline(
      pipeline_name=config.runner.pipeline_name,
      pipeline_root=config.runner.pipeline_root,
      components=components,
      enable_cache=config.runner.enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args(config),
  )
