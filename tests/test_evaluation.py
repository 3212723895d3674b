"""The Evaluator's config as TFMA reads it: the metrics, slices and blessing threshold that
pipeline.report and pipeline.inspect read, and no second pass of the Transform graph."""
import json

import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.extractors import transformed_features_extractor
from tensorflow_model_analysis.metrics import metric_specs

from base import compat, constants
from base.configs import EvaluationConfig
from base.errors import UserError
from pipeline import evaluation


def _with_tfma_defaults(config):
  """The config as TFX's Evaluator executor hands it to TFMA (first run: no baseline)."""
  return tfma.utils.update_eval_config_with_defaults(config, has_baseline=False, rubber_stamp=True)


def _metric_names(config) -> set:
  """The metric and plot names TFMA computes for the config (TFMA's own expansion of the specs)."""
  config = _with_tfma_defaults(config)
  computations = metric_specs.to_computations(config.metrics_specs, eval_config=config)
  return {key.name for computation in computations for key in computation.keys}


def test_tfma_computes_every_metric_the_report_and_inspect_read():
  names = _metric_names(evaluation.make_eval_config(20, 0.5))
  # Keras' and TFMA's names of the metrics: accuracy, top-k accuracy, the example count and the
  # top-1 confusion matrix (pipeline.runs reads the plot).
  assert {'sparse_categorical_accuracy', 'sparse_top_k_categorical_accuracy', 'example_count',
          'multi_class_confusion_matrix_plot'} <= names
  assert {evaluation.ACCURACY, evaluation.TOP_K_ACCURACY} <= names


@pytest.mark.parametrize('num_classes,k', [(20, 5), (3, 3)])
def test_top_k_is_five_or_the_number_of_classes(num_classes, k):
  config = evaluation.make_eval_config(num_classes, 0.0)
  top_k = [m for m in config.metrics_specs[0].metrics
           if m.class_name == 'SparseTopKCategoricalAccuracy']
  assert [json.loads(m.config)['k'] for m in top_k] == [k]


def test_slices_are_overall_per_class_and_per_superclass():
  config = evaluation.make_eval_config(20, 0.0)
  assert [tuple(s.feature_keys) for s in config.slicing_specs] == [
      (), ('label_name',), ('coarse_label',)]


@pytest.mark.parametrize('baseline', [True, False])
def test_blessing_thresholds_only_overall_accuracy(baseline):
  config = evaluation.make_eval_config(20, 0.25, compare_to_baseline=baseline)
  # As TFMA reads them on a first run (no baseline yet: change thresholds are rubber-stamped).
  with_defaults = _with_tfma_defaults(config)
  thresholds = tfma.metrics.metric_thresholds_from_metrics_specs(
      with_defaults.metrics_specs, eval_config=with_defaults)
  assert [key.name for key in thresholds] == ['sparse_categorical_accuracy']
  [(slice_spec, threshold)] = next(iter(thresholds.values()))
  assert slice_spec == compat.tfma_config().SlicingSpec()  # the overall slice only
  assert threshold.lower_bound.value == 0.25
  # With a baseline: not below it (HIGHER_IS_BETTER, any change above -1e-10).
  [metric] = [m for m in config.metrics_specs[0].metrics if m.per_slice_thresholds]
  [per_slice] = metric.per_slice_thresholds
  assert per_slice.threshold.HasField('change_threshold') == baseline
  if baseline:
    assert per_slice.threshold.change_threshold.direction == compat.tfma_config().MetricDirection.HIGHER_IS_BETTER


def test_the_transform_graph_runs_once_inside_the_serving_signature():
  """With no preprocessing function named, TFMA's TransformedFeaturesExtractor looks for its
  default signature names, which the exported model does not have, and runs nothing: the only
  pass of the Transform graph is the one inside `serving_default`."""
  [spec] = evaluation.make_eval_config(20, 0.0).model_specs
  assert list(spec.preprocessing_function_names) == []
  assert spec.signature_name == constants.SERVING_SIGNATURE
  exported = {constants.SERVING_SIGNATURE, constants.TRANSFORM_SIGNATURE,
              constants.IMAGE_BYTES_SIGNATURE}
  defaults = set(transformed_features_extractor._DEFAULT_SIGNATURE_NAMES)  # pylint: disable=protected-access
  assert defaults and not defaults & exported
  # The label and the slice features are raw features of the test examples.
  assert spec.label_key == constants.LABEL_KEY


@pytest.mark.parametrize('accuracy', [-0.1, 1.5])
def test_bless_min_accuracy_outside_0_1_is_a_user_error(accuracy):
  with pytest.raises(UserError, match='--bless-min-accuracy'):
    evaluation.check_evaluation_config(EvaluationConfig(min_accuracy=accuracy))
