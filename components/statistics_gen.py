"""StatisticsGen that computes TFDV's statistics in memory when Beam would run on this machine.

TFX's executor builds one Beam pipeline with a ~150-transform TFDV graph per split. On the
DirectRunner, building and running that graph cost ~2 CPU s per split before the statistics
themselves, which took ~0.1 s for 17,000 photos (docs/benchmarks.md, data preparation). TFDV's
in-memory path feeds the same combiners Arrow record batches read through the split's TFXIO, one
batch at a time, so memory holds one batch and the accumulators, never a split.

TFDV's in-memory path counts top values and uniques with sketches (Misra-Gries, KMV). The
component asks TFDV's Beam path for the same sketches (`STATS_OPTIONS`), so a run on Dataflow,
which keeps TFX's Beam executor, writes the same statistics as a local run
(tests/test_statistics_gen.py). The sketches are exact below 1,024 distinct values (labels and
class names); the image bytes' unique count becomes an estimate (16,957 for 17,000 distinct
photos). SchemaGen and ExampleValidator read the statistics as before.
"""
import json
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence

import pyarrow as pa
import tensorflow_data_validation as tfdv
from absl import logging
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from tensorflow_data_validation.statistics import stats_impl
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx import types
from tfx.components import StatisticsGen as TfxStatisticsGen
from tfx.components.statistics_gen import executor as tfx_executor
from tfx.components.util import examples_utils, tfxio_utils
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils
from tfx.types import standard_component_specs as specs
from tfx.utils import io_utils, json_utils
from tfx_bsl.tfxio import dataset_options

# The statistics' options on every runner: the sketches TFDV's in-memory path always uses.
STATS_OPTIONS = tfdv.StatsOptions(use_sketch_based_topk_uniques=True)
# Examples per Arrow record batch (~3 MB of 32x32 PNGs).
BATCH_SIZE = 1000


def runs_locally(beam_pipeline_args: Optional[Sequence[str]]) -> bool:
  """Whether Beam would run in this process's machine (a DirectRunner: the default)."""
  runner = PipelineOptions(list(beam_pipeline_args or [])).view_as(StandardOptions).runner
  return runner is None or 'direct' in runner.lower()


def split_statistics(record_batches: Iterable[pa.RecordBatch], options: tfdv.StatsOptions
                     ) -> statistics_pb2.DatasetFeatureStatisticsList:
  """TFDV's statistics of a stream of record batches, as `tfdv.GenerateStatistics` computes
  them, with TFDV's in-memory combiners."""
  generators = stats_impl.get_generators(options, in_memory=True)
  accumulators = [generator.create_accumulator() for generator in generators]
  for batch in record_batches:
    accumulators = [generator.add_input(accumulator, batch)
                    for generator, accumulator in zip(generators, accumulators)]
  return stats_impl.extract_statistics_output(accumulators, generators)


def _json(exec_properties: Dict[str, Any], key: str) -> Any:
  return json.loads(exec_properties.get(key) or 'null')


class Executor(tfx_executor.Executor):
  """TFX's StatisticsGen executor, in memory for the options this project sets."""

  def _in_memory(self, input_dict: Dict[str, List[types.Artifact]], examples: types.Artifact,
                 exec_properties: Dict[str, Any], options: tfdv.StatsOptions) -> bool:
    """Whether the run is local and asks for nothing beyond splits and default generators:
    anything else (a schema, sampling, sharded output, a feature allowlist) goes to TFX."""
    return (runs_locally(self._beam_pipeline_args)
            and not input_dict.get(specs.SCHEMA_KEY)
            and not exec_properties.get(specs.SHARDED_STATS_OUTPUT_KEY)
            and not _json(exec_properties, specs.SAMPLE_RATE_BY_SPLIT_KEY)
            and not examples.has_custom_property(
                examples_utils.CUSTOM_SPLIT_PATTERN_PROPERTY_NAME)
            and options.schema is None and options.sample_rate is None
            and not options.feature_allowlist and not options.experimental_filter_read_paths
            and options.add_default_generators and not options.generators
            and not options.enable_semantic_domain_stats)

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    """Writes Split-<name>/FeatureStats.pb and the artifact's properties as TFX's executor
    does."""
    options_json = exec_properties.get(specs.STATS_OPTIONS_JSON_KEY)
    options = tfdv.StatsOptions.from_json(options_json) if options_json else tfdv.StatsOptions()
    examples = artifact_utils.get_single_instance(input_dict[specs.EXAMPLES_KEY])
    if not self._in_memory(input_dict, examples, exec_properties, options):
      super().Do(input_dict, output_dict, exec_properties)
      return
    self._log_startup(input_dict, output_dict, exec_properties)
    excluded = _json(exec_properties, specs.EXCLUDE_SPLITS_KEY) or []
    splits = [split for split in artifact_utils.decode_split_names(examples.split_names)
              if split not in excluded]
    if not splits:
      raise ValueError(f'No splits for examples artifact: {examples}')
    statistics = artifact_utils.get_single_instance(output_dict[specs.STATISTICS_KEY])
    statistics.split_names = artifact_utils.encode_split_names(splits)
    statistics.span = examples.span
    statistics.set_string_custom_property(tfx_executor.STATS_DASHBOARD_LINK, '')
    statistics.set_json_value_custom_property(
        tfx_executor.SAMPLE_RATE_BY_SPLIT_PROPERTY_NAME,
        json_utils.dumps({split: 1.0 for split in splits}))
    batches = dataset_options.RecordBatchesOptions(
        batch_size=BATCH_SIZE, shuffle=False, num_epochs=1)
    for split in splits:
      logging.info('Generating statistics for split %s in memory.', split)
      tfxio = tfxio_utils.get_split_tfxio(
          examples=[examples], split=split, telemetry_descriptors=['StatisticsGen'])
      result = split_statistics(tfxio.RecordBatches(batches), options)
      output = artifact_utils.get_split_uri([statistics], split)
      io_utils.write_bytes_file(os.path.join(output, tfx_executor.DEFAULT_FILE_NAME),
                                result.SerializeToString())


class StatisticsGen(TfxStatisticsGen):
  """TFX's StatisticsGen with `STATS_OPTIONS` and the in-memory executor (same id, inputs and
  outputs)."""

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, examples: types.BaseChannel):
    super().__init__(examples=examples, stats_options=STATS_OPTIONS)
