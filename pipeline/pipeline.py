"""`create_pipeline(config)`: the one definition of the pipeline graph, for every runner."""
import dataclasses
import functools
import hashlib
import json
import os
from typing import List, Optional, Sequence

from tfx import v1 as tfx

from components.data_validation import CuratedSchemaGen, ValidationGate
from components.example_gen.component import Cifar100ExampleGen
from components.statistics_gen import StatisticsGen
from components.tuner import Tuner
from modules import tuner as tuner_module
from modules import trainer as trainer_module
from base.configs import DataConfig, PipelineConfig
from pipeline import evaluation
from pipeline.vertex import VertexTraining
from base import constants
from base.constants import EVAL_SPLIT, TEST_SPLIT, TRAIN_SPLIT

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP_FILE = os.path.join(PROJECT_DIR, 'setup.py')

# The user functions, by import path: the project is installed wherever components run (this
# machine, the pipeline image), so TFX neither packages a wheel nor uploads one when compiling.
PREPROCESSING_FN = 'modules.transform.preprocessing_fn'
RUN_FN = 'modules.trainer.run_fn'
TUNER_FN = 'modules.tuner.tuner_fn'
# The packages whose code those functions run (their fingerprint: constants.CODE_FINGERPRINT).
CODE_PACKAGES = ('base', 'datasources', 'modules')


def source_fingerprint(root: str, packages: Sequence[str]) -> str:
  """SHA-256 of the Python sources under `root`/`packages` (their relative paths and bytes)."""
  digest = hashlib.sha256()
  for package in sorted(packages):
    for folder, dirs, files in os.walk(os.path.join(root, package)):
      dirs[:] = sorted(d for d in dirs if d != '__pycache__')
      for name in sorted(f for f in files if f.endswith('.py')):
        path = os.path.join(folder, name)
        digest.update(os.path.relpath(path, root).replace(os.sep, '/').encode() + b'\0')
        with open(path, 'rb') as f:
          digest.update(f.read() + b'\0')
  return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def code_fingerprint() -> str:
  """The fingerprint of the code that Transform, Tuner and Trainer run, for their custom_config.

  With `module_file`, TFX fingerprints the module's code into the component's cache key; with
  function paths (`RUN_FN`, ...) it sees only the path, so a changed preprocessing or training
  code would silently reuse the stale cached artifacts. This value in their custom_config makes a
  code change re-run them. Computed once per process (the sources do not change during a run).
  """
  return source_fingerprint(PROJECT_DIR, CODE_PACKAGES)


def beam_pipeline_args(config: PipelineConfig) -> List[str]:
  """DirectRunner in-process, or multi_processing with --beam-workers N workers.

  `--setup_file` names our package for remote Beam workers, and spares TFX from building an
  ephemeral TFX package before every Beam step (1.5 s each).
  """
  workers = config.data.beam_workers
  mode = (['--direct_running_mode=multi_processing', f'--direct_num_workers={workers}']
          if workers > 0 else ['--direct_running_mode=in_memory', '--direct_num_workers=1'])
  return mode + [f'--setup_file={SETUP_FILE}']


def check_config(config: PipelineConfig) -> PipelineConfig:
  """Checks the model, training, tuning and evaluation settings of a resolved config before any
  component runs (UserError), and stages an imported hyperparameters file; returns the config
  to run."""
  data = config.data
  trainer_module.check_training_config(config.training, len(data.class_names),
                                       data.stored_image_size)
  tuner_module.check_tuning_config(config.tuning, config.training.model)
  evaluation.check_evaluation_config(config.evaluation)
  if config.tuning.hyperparameters:
    staged = tuner_module.stage_hyperparameters(config.tuning.hyperparameters,
                                                config.runner.output_dir)
    config = config.replace(tuning=dataclasses.replace(config.tuning, hyperparameters=staged))
  return config


def _study_tag(config: PipelineConfig) -> dict:
  """The run's study and variant for the Trainer's custom_config (nothing for a plain run, so
  that its cache key stays what it was)."""
  return {constants.STUDY: dataclasses.asdict(config.study)} if config.study.study else {}


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
                    metadata_connection_config: Optional[object] = None,
                    beam_args: Optional[List[str]] = None,
                    vertex_training: Optional[VertexTraining] = None) -> tfx.dsl.Pipeline:
  """The pipeline's components in DAG order, for a config resolved by `pipeline.data`.

  Args:
    config: the resolved config.
    metadata_connection_config: ML Metadata (None: the orchestrator's own, e.g. Vertex).
    beam_args: Beam pipeline args; None: the local DirectRunner (`beam_pipeline_args`).
    vertex_training: run the Tuner and Trainer as Vertex AI Training jobs (kubeflow_runner).
  """
  data = config.data
  example_gen = make_example_gen(data)
  statistics_gen = StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.SchemaGen(
      statistics=statistics_gen.outputs['statistics'], infer_feature_shape=True)
  curated_schema = CuratedSchemaGen(
      schema=schema_gen.outputs['schema'], class_names=json.dumps(list(data.class_names)))
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'],
      schema=curated_schema.outputs['curated_schema'])
  validation_gate = ValidationGate(anomalies=example_validator.outputs['anomalies'])
  schema = curated_schema.outputs['curated_schema']

  transform = tfx.components.Transform(
      examples=example_gen.outputs['examples'],
      schema=schema,
      preprocessing_fn=PREPROCESSING_FN,
      # Decoded pixels whatever the model (it normalizes them in its first layer): every model
      # of the same data reuses one cached Transform output.
      custom_config={
          constants.STORED_IMAGE_SIZE: data.stored_image_size,
          constants.CODE_FINGERPRINT: code_fingerprint(),
      },
      splits_config=tfx.proto.SplitsConfig(analyze=[TRAIN_SPLIT]),
      # Only the transform graph: the Tuner and the Trainer apply it to ExampleGen's examples in
      # tf.data (modules/inputs.py), the Evaluator through the model's own transform signature.
      # With no materialised output, no statistics and no analyzer in preprocessing_fn, TFX runs
      # TFT's in-place mode: no Beam pass over the pixels at all (docs/benchmarks.md, data
      # preparation). No TFDV statistics: StatisticsGen has the raw ones.
      materialize=False,
      disable_statistics=True)
  transform.add_upstream_node(validation_gate)  # never train on data that failed validation

  # Hyperparameters: searched by the Tuner, imported from an earlier search, or the config's.
  tuning = config.tuning
  tuning_components, hyperparameters, source = [], None, 'config'
  trainer_config = {
      **trainer_module.trainer_custom_config(config.training, data.class_names,
                                             data.stored_image_size),
      constants.CODE_FINGERPRINT: code_fingerprint(),
  }
  if tuning.tuner:
    tuner = (vertex_training.tuner if vertex_training else Tuner)(
        tuner_fn=TUNER_FN,
        examples=example_gen.outputs['examples'],
        transform_graph=transform.outputs['transform_graph'],
        schema=schema,
        train_args=tfx.proto.TrainArgs(splits=[TRAIN_SPLIT]),
        eval_args=tfx.proto.EvalArgs(splits=[EVAL_SPLIT]),
        custom_config={**trainer_config, tuner_module.TUNING: dataclasses.asdict(tuning)})
    tuning_components, hyperparameters, source = (
        [tuner], tuner.outputs['best_hyperparameters'], 'tuner')
  elif tuning.hyperparameters:
    importer = tfx.dsl.Importer(
        source_uri=tuning.hyperparameters,
        artifact_type=tfx.types.standard_artifacts.HyperParameters,
    ).with_id(constants.HYPERPARAMETERS_IMPORTER)
    tuning_components, hyperparameters, source = (
        [importer], importer.outputs['result'], f'imported: {tuning.hyperparameters}')

  trainer = (vertex_training.trainer if vertex_training else tfx.components.Trainer)(
      run_fn=RUN_FN,
      examples=example_gen.outputs['examples'],
      transform_graph=transform.outputs['transform_graph'],
      schema=schema,
      hyperparameters=hyperparameters,
      train_args=tfx.proto.TrainArgs(splits=[TRAIN_SPLIT]),
      eval_args=tfx.proto.EvalArgs(splits=[EVAL_SPLIT]),
      custom_config={**trainer_config, trainer_module.HYPERPARAMETERS_SOURCE: source,
                     **_study_tag(config)})

  # The latest blessed model of this pipeline, the baseline a new model must not fall behind.
  baseline = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id(constants.BASELINE_RESOLVER)
  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      baseline_model=baseline.outputs['model'],
      eval_config=evaluation.make_eval_config(
          len(data.class_names), config.evaluation.min_accuracy,
          config.evaluation.compare_to_baseline),
      example_splits=[TEST_SPLIT])
  pusher = tfx.components.Pusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=config.runner.serving_model_dir)))

  components = [
      example_gen, statistics_gen, schema_gen, curated_schema, example_validator, validation_gate,
      transform, *tuning_components, trainer, baseline, evaluator, pusher,
  ]
  return tfx.dsl.Pipeline(
      pipeline_name=config.runner.pipeline_name,
      pipeline_root=config.runner.pipeline_root,
      components=components,
      enable_cache=config.runner.enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_args if beam_args is not None else beam_pipeline_args(config),
  )
