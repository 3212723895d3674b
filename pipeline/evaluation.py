"""The Evaluator's configuration: which metrics, which slices, and when a model is blessed.

The model is evaluated as a generic TF model through its signatures (Keras 3 models export no
Keras metadata TFMA could use): `serving_default` gives `probabilities`, and the raw features that
slices need (`label_name`, `coarse_label`) come from the raw test examples. Slicing by the string
features `label_name`/`coarse_label`, never by the integer label, avoids TFMA's one_hot IndexError
of tensorflow/tfx issue 2341 with multi-class metrics.
"""
import json

from base import compat, constants
from base.configs import EvaluationConfig
from base.errors import UserError

ACCURACY = 'sparse_categorical_accuracy'
TOP_K_ACCURACY = 'sparse_top_k_categorical_accuracy'
TOP_K = 5
SLICE_FEATURES = (constants.LABEL_NAME_KEY, constants.COARSE_LABEL_KEY)


def check_evaluation_config(config: EvaluationConfig) -> None:
  if not 0.0 <= config.min_accuracy <= 1.0:
    raise UserError(f'--bless-min-accuracy {config.min_accuracy}: must be between 0 and 1')


def make_eval_config(num_classes: int, min_accuracy: float,
                     compare_to_baseline: bool = True):
  """Accuracy, top-k accuracy, example count and the top-1 confusion matrix, overall and per class
  and superclass; blessed when accuracy >= min_accuracy and (with a baseline) not lower than the
  latest blessed model's.

  Macro precision and recall are derived from the confusion matrix (`macro_precision_recall`):
  TFMA 0.47's binarized Precision/Recall with top_k=1 cannot be macro-averaged (its aggregation
  looks the per-class values up without their top_k and fails with a KeyError).
  """
  tfma_config = compat.tfma_config()  # TFMA's config protos, on both stacks (imports TFMA: 10-20 s)
  threshold = tfma_config.MetricThreshold(
      value_threshold=tfma_config.GenericValueThreshold(lower_bound={'value': min_accuracy}))
  if compare_to_baseline:
    threshold.change_threshold.CopyFrom(tfma_config.GenericChangeThreshold(
        direction=tfma_config.MetricDirection.HIGHER_IS_BETTER, absolute={'value': -1e-10}))
  top_k = min(TOP_K, num_classes)
  return tfma_config.EvalConfig(
      # No preprocessing_function_names: serving_default runs the Transform graph itself, and
      # TFMA would run it a second time over every test image (decoded pixels it then copies
      # into each example's extract) for transformed features nothing reads: the label and the
      # slice features are raw features (docs/benchmarks.md, Evaluator).
      model_specs=[tfma_config.ModelSpec(
          signature_name=constants.SERVING_SIGNATURE,
          label_key=constants.LABEL_KEY,
          prediction_key=constants.PROBABILITIES_OUTPUT)],
      slicing_specs=[tfma_config.SlicingSpec()] + [
          tfma_config.SlicingSpec(feature_keys=[key]) for key in SLICE_FEATURES],
      metrics_specs=[
          tfma_config.MetricsSpec(metrics=[
              tfma_config.MetricConfig(class_name='ExampleCount'),
              # Blessing looks at the overall slice only: a better model may still lose a
              # little on a class of a few test images.
              tfma_config.MetricConfig(
                  class_name='SparseCategoricalAccuracy',
                  per_slice_thresholds=[tfma_config.PerSliceMetricThreshold(
                      slicing_specs=[tfma_config.SlicingSpec()], threshold=threshold)]),
              tfma_config.MetricConfig(class_name='SparseTopKCategoricalAccuracy',
                                       config=json.dumps({'k': top_k})),
              tfma_config.MetricConfig(class_name='MultiClassConfusionMatrixPlot'),
          ]),
      ])


def macro_precision_recall(matrix) -> tuple:
  """(macro precision, macro recall) of a [true, predicted] count matrix; a class nobody
  predicted counts as precision 0, as in scikit-learn's zero_division=0."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  matrix = np.asarray(matrix, dtype=np.float64)
  true_positives = np.diag(matrix)
  predicted = matrix.sum(axis=0)
  actual = matrix.sum(axis=1)
  precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives),
                        where=predicted > 0)
  recall = np.divide(true_positives, actual, out=np.zeros_like(true_positives), where=actual > 0)
  present = actual > 0
  return float(precision[present].mean()), float(recall[present].mean())
