"""The in-memory StatisticsGen against TFX's own Beam executor, on ExampleGen-format examples."""
import json
import os

import numpy as np
import pytest
from google.protobuf import json_format
from tfx.components.statistics_gen import executor as tfx_executor
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts

from base import constants
from components import statistics_gen
from datasources import encoding
from pipeline import vertex
from tests import fixtures

SPLIT_SIZES = {constants.TRAIN_SPLIT: 150, constants.EVAL_SPLIT: 40, constants.TEST_SPLIT: 60}
NAMES = ('apple', 'bee', 'cloud')


def _write_examples(root) -> standard_artifacts.Examples:
  """Per split, two gzipped TFRecord files as ExampleGen writes them; in train every image
  appears twice (so its unique count is half its count)."""
  rng = np.random.default_rng(0)
  for split, size in SPLIT_SIZES.items():
    labels = rng.integers(0, len(NAMES), size)
    distinct = size // 2 if split == constants.TRAIN_SPLIT else size
    pngs = encoding.encode_pngs(fixtures.class_images(labels[:distinct], seed=size))
    records = [fixtures.raw_example(pngs[n % distinct], labels[n % distinct],
                                    NAMES[labels[n % distinct]].encode()) for n in range(size)]
    os.makedirs(root / f'Split-{split}')
    for part, chunk in enumerate((records[:size // 3], records[size // 3:])):
      encoding.write_tfrecord_gz(
          str(root / f'Split-{split}' / f'data_tfrecord-0000{part}-of-00002.gz'), chunk)
  examples = standard_artifacts.Examples()
  examples.uri = str(root)
  examples.split_names = json.dumps(list(SPLIT_SIZES))
  examples.span = 7
  return examples


def _run(executor_class, examples, uri, exec_properties, beam_args=()):
  statistics = standard_artifacts.ExampleStatistics()
  statistics.uri = str(uri)
  context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=list(beam_args),
                                                        tmp_dir=str(uri) + '.tmp')
  executor_class(context).Do({'examples': [examples]}, {'statistics': [statistics]},
                             exec_properties)
  return statistics


def _rounded(value):
  """A proto's dict with its doubles to 12 digits: the two paths sum in different orders."""
  if isinstance(value, float):
    return float(f'{value:.12g}')
  if isinstance(value, dict):
    return {key: _rounded(item) for key, item in value.items()}
  if isinstance(value, list):
    return [_rounded(item) for item in value]
  return value


@pytest.fixture(scope='module')
def examples(tmp_path_factory):
  return _write_examples(tmp_path_factory.mktemp('examples'))


def test_in_memory_statistics_equal_tfx_beam_executors(examples, tmp_path, monkeypatch):
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  properties = {'stats_options_json': statistics_gen.STATS_OPTIONS.to_json(),
                'exclude_splits': json.dumps([constants.EVAL_SPLIT])}
  expected = _run(tfx_executor.Executor, examples, tmp_path / 'beam', properties)

  def beam_executor(*args):
    raise AssertionError('the in-memory executor handed the work to Beam')

  monkeypatch.setattr(tfx_executor.Executor, 'Do', beam_executor)
  got = _run(statistics_gen.Executor, examples, tmp_path / 'memory', properties)

  kept = [constants.TRAIN_SPLIT, constants.TEST_SPLIT]
  assert json.loads(got.split_names) == json.loads(expected.split_names) == kept
  assert got.span == expected.span == 7
  assert (got.mlmd_artifact.custom_properties == expected.mlmd_artifact.custom_properties)
  assert not os.path.exists(tmp_path / 'memory' / f'Split-{constants.EVAL_SPLIT}')
  for split in kept:
    ours, tfx = (tfdv.load_stats_binary(os.path.join(a.uri, f'Split-{split}', 'FeatureStats.pb'))
                 for a in (got, expected))
    assert _rounded(json_format.MessageToDict(ours)) == _rounded(json_format.MessageToDict(tfx))
    # And against what was written, outside both executors.
    dataset = ours.datasets[0]
    assert dataset.num_examples == SPLIT_SIZES[split]
    image = next(f for f in dataset.features if f.path.step == [constants.IMAGE_KEY])
    distinct = SPLIT_SIZES[split] // (2 if split == constants.TRAIN_SPLIT else 1)
    assert image.string_stats.unique == distinct
    names = next(f for f in dataset.features if f.path.step == [constants.LABEL_NAME_KEY])
    assert {v.value for v in names.string_stats.top_values} <= set(NAMES)


def test_options_beyond_the_defaults_go_to_tfx_beam_executor(examples, tmp_path, monkeypatch):
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  calls = []
  monkeypatch.setattr(tfx_executor.Executor, 'Do', lambda self, *args: calls.append(args))
  sampled = tfdv.StatsOptions(use_sketch_based_topk_uniques=True, sample_rate=0.5)
  for properties, beam_args in (
      ({'stats_options_json': sampled.to_json()}, ()),
      ({'sample_rate_by_split': json.dumps({'train': 0.5})}, ()),
      ({}, ['--runner=DataflowRunner', '--project=p', '--region=r'])):
    _run(statistics_gen.Executor, examples, tmp_path / str(len(calls)), properties, beam_args)
  assert len(calls) == 3


def test_only_a_direct_runner_runs_locally():
  assert statistics_gen.runs_locally(None)
  assert statistics_gen.runs_locally(['--direct_running_mode=in_memory', '--setup_file=x'])
  assert statistics_gen.runs_locally(list(vertex.DIRECT_BEAM_ARGS))  # in a Vertex step's container
  assert statistics_gen.runs_locally(['--runner=DirectRunner'])
  assert not statistics_gen.runs_locally(['--runner=DataflowRunner', '--project=p'])
  assert not statistics_gen.runs_locally(['--runner', 'FlinkRunner'])
