"""`create_pipeline(config)`: the one definition of the pipeline graph, for every runner."""
import json
from typing import List, Optional

from tfx import v1 as tfx

from components.data_validation import CuratedSchemaGen, ValidationGate
from components.example_gen.component import Cifar100ExampleGen
from pipeline.configs import PipelineConfig


def beam_pipeline_args(config: PipelineConfig) -> List[str]:
  """DirectRunner in-process, or multi_processing with --beam-workers N workers."""
  workers = config.data.beam_workers
  if workers > 0:
    return ['--direct_running_mode=multi_processing', f'--direct_num_workers={workers}']
  return ['--direct_running_mode=in_memory', '--direct_num_workers=1']


def create_pipeline(config: PipelineConfig,
                    metadata_connection_config: Optional[object] = None) -> tfx.dsl.Pipeline:
  """The pipeline's components in DAG order, for a config resolved by `pipeline.data`."""
  data = config.data
  if not data.class_names:
    raise ValueError('create_pipeline needs a resolved config (pipeline.data.resolve_data)')
  example_gen = Cifar100ExampleGen(
      source=data.source, source_path=data.source_path, class_names=data.class_names,
      source_ids=data.fine_label_ids, coarse_names=data.coarse_names, split_seed=data.team_seed,
      eval_fraction=data.eval_fraction, test_fraction=data.test_fraction,
      trust_data=data.trust_data)
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
