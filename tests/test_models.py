"""Tests of modules/models.py: shapes, parameter counts, mixed precision, freezing, weights files.

Models are built small and never trained, so the file runs in well under a minute on a CPU.
"""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.utils import file_utils

from modules import models
from base import constants
from tests import fixtures

# Official ImageNet weights of MobileNet(alpha=0.25, include_top=False), see its README.md.
MOBILENET_025_WEIGHTS = '/work/shared/weights/mobilenet_2_5_224_tf_no_top.h5'
needs_weights_file = pytest.mark.skipif(not os.path.exists(MOBILENET_025_WEIGHTS),
                                        reason='MobileNet alpha=0.25 weights file not present')

# MobileNet v1 at alpha=0.25 (channels 8, 16, 32, 64, 128, 256), by hand: the first 3x3 conv
# (216 weights) and 13 depthwise-separable blocks of 9*c_in + c_in*c_out weights, no biases.
MOBILENET_025_CONV_WEIGHTS = 207_600  # + 10,944 BatchNorm weights = the file's 218,544
MOBILENET_025_LAST_BLOCK_CONV_WEIGHTS = 9 * 256 + 256 * 256  # conv_dw_13 + conv_pw_13: 67,840
MOBILENET_025_LAST_BLOCK_LAYERS = 6  # conv_dw_13, its BN and ReLU, conv_pw_13, its BN and ReLU


@pytest.fixture
def mixed_bfloat16():
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy('mixed_bfloat16')
  yield
  keras.mixed_precision.set_global_policy(previous)


def _images(batch, size=32):
  return np.random.default_rng(0).uniform(0, 1, (batch, size, size, 3)).astype('float32')


@pytest.mark.parametrize('num_classes', [20, 100])
def test_simple_cnn_parameter_count(num_classes):
  model = models.build_model('simple_cnn', 32, num_classes)
  assert models.count_params(model) == (121_920 + 65 * num_classes,) * 2


@pytest.mark.parametrize('num_classes', [100, 20])
def test_vgg16_parameter_count(num_classes):
  model = models.build_model('vgg16', 32, num_classes, weights=None)
  assert models.count_params(model) == (14_714_688 + 513 * num_classes,) * 2


@pytest.mark.parametrize('num_classes', [5, 20, 100])
def test_resnet_parameter_count(num_classes):
  width = 32  # the default
  model = models.build_model('resnet', 32, num_classes)
  count = model.count_params()
  assert count == 472.5 * width**2 + 99.5 * width + (4 * width + 1) * num_classes
  assert 0.48e6 < count < 0.51e6  # the range its docstring states


def test_resnet_width_sets_its_channels():
  width = 48
  model = models.build_model('resnet', 32, 5, width=width)
  assert model.count_params() == 472.5 * width**2 + 99.5 * width + (4 * width + 1) * 5
  assert [l.filters for l in model.layers if isinstance(l, keras.layers.Conv2D)] == [
      24, 48, 48, 48, 96, 96, 96, 192, 192, 192]


@pytest.mark.parametrize('width', [0, 1, 2.5])
def test_resnet_refuses_a_width_below_two_or_fractional(width):
  with pytest.raises(ValueError, match=f'--width {width}: the resnet needs a whole number'):
    models.build_model('resnet', 32, 5, width=width)


def test_width_is_the_resnets_alone():
  with pytest.raises(ValueError, match="Model 'simple_cnn' does not take width"):
    models.build_model('simple_cnn', 32, 5, width=48)


def test_airbench_parameter_count_and_channels():
  """By hand: the whitening's 2x2x3x24 frozen filters and 24 biases; six 3x3 convolutions of
  24->w, w->w, w->4w and three 4w->4w; BatchNorm's 4 values per channel; the Dense head."""
  width, classes = 48, 5
  model = models.build_model('airbench', 32, classes, width=width)
  convolutions = 9 * (24 * width + width**2 + 4 * width**2 + 3 * 16 * width**2)
  assert model.count_params() == (2 * 2 * 3 * 24 + 24 + convolutions + 4 * 18 * width +
                                  (4 * width + 1) * classes) == 1_114_109
  assert models.count_params(model)[0] == model.count_params() - 288 - 2 * 18 * width
  assert [l.filters for l in model.layers if isinstance(l, keras.layers.Conv2D)] == [
      48, 48, 192, 192, 192, 192]


@pytest.mark.parametrize('width', [0, 2.5])
def test_airbench_refuses_a_width_below_one_or_fractional(width):
  with pytest.raises(ValueError, match=f'--width {width}: airbench needs a whole number'):
    models.build_model('airbench', 32, 5, width=width)


def test_gelu_tanh_is_the_tanh_approximation_and_airbench_activates_with_it():
  x = np.linspace(-6, 6, 241).astype('float32')
  # Hendrycks and Gimpel (2016): 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
  expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
  np.testing.assert_allclose(keras.ops.convert_to_numpy(models.gelu_tanh(x)), expected,
                             rtol=1e-5, atol=1e-6)
  model = models.build_model('airbench', 32, 5, width=8)
  # After the whitening and each convolution's BN; no other activation layers.
  assert sum(isinstance(l, models.GeluTanh) for l in model.layers) == 7
  assert not any(isinstance(l, keras.layers.Activation) for l in model.layers)
  resnet = models.build_model('resnet', 32, 5, width=8)
  assert {l.get_config()['activation'] for l in resnet.layers
          if isinstance(l, keras.layers.Activation)} == {'relu'}


def _ops_compiled(layer, training):
  """Whether the layer's graph, traced with `training`, holds a call that XLA must compile."""
  graph = tf.function(lambda x: layer(x, training=training)).get_concrete_function(
      tf.TensorSpec([None, 8], tf.float32)).graph
  return any('_XlaMustCompile' in op.node_def.attr for op in graph.get_operations())


@pytest.mark.parametrize('dtype,tolerance', [('float32', 1e-5), ('bfloat16', 1 / 128),
                                             ('float16', 1 / 1024)])
def test_gelu_tanh_layer_trains_compiled_with_the_plain_ops_values_and_gradients(dtype, tolerance):
  """In training `GeluTanh` runs compiled kernels with a hand-written gradient; the values and
  the input gradient must be those of `gelu_tanh`'s plain ops differentiated by TensorFlow in
  float64 on the same inputs, to the rounding of the dtype (bfloat16 keeps 8 bits, float16 11; in
  float32 1 + tanh cancels in the tails, as in the plain ops)."""
  x = tf.constant(np.linspace(-6, 6, 4 * 241).reshape(4, 241), dtype)
  upstream = tf.constant(np.random.default_rng(0).normal(size=(4, 241)), dtype)
  layer = models.GeluTanh(dtype=dtype)  # in and out as under mixed_bfloat16 / mixed_float16
  results = []
  for fn, v in ((lambda v: layer(v, training=True), x), (models.gelu_tanh, tf.cast(x, 'float64'))):
    with tf.GradientTape() as tape:
      tape.watch(v)
      y = fn(v)
    results.append((y, tape.gradient(y, v, output_gradients=tf.cast(upstream, v.dtype))))
  (y, dx), (y_expected, dx_expected) = results
  assert y.dtype == dx.dtype == x.dtype
  for got, want in ((y, y_expected), (dx, dx_expected)):
    np.testing.assert_allclose(tf.cast(got, tf.float64).numpy(), want.numpy(), rtol=tolerance,
                               atol=tolerance)


def test_gelu_tanh_layer_compiles_only_in_training():
  """Inference, hence the exported model, must run plain ops any TensorFlow runtime serves."""
  layer = models.GeluTanh()
  assert _ops_compiled(layer, training=True)
  assert not _ops_compiled(layer, training=False)
  x = np.linspace(-6, 6, 16).reshape(2, 8).astype('float32')
  np.testing.assert_array_equal(layer(x, training=False).numpy(), models.gelu_tanh(x).numpy())


def _covariance_of_responses(layer, images):
  """Covariance of the layer's filter responses (bias left out) over every patch position."""
  responses = keras.ops.convert_to_numpy(layer(images.astype('float32'))) - layer.bias.numpy()
  return np.cov(responses.reshape(-1, responses.shape[-1]), rowvar=False)


def test_patch_whitening_decorrelates_the_patches_it_was_adapted_on():
  images = fixtures.correlated_images()
  layer = models.PatchWhitening(2)
  layer.adapt(images)
  covariance = _covariance_of_responses(layer, images)
  assert covariance.shape == (24, 24)
  # The first 12 responses are uncorrelated with unit variance; the other 12 are their negatives.
  np.testing.assert_allclose(covariance[:12, :12], np.eye(12), atol=0.01)
  np.testing.assert_allclose(covariance[12:, :12], -np.eye(12), atol=0.01)
  raw = np.corrcoef(fixtures.patches_2x2(images), rowvar=False)
  assert np.abs(raw - np.eye(12)).max() > 0.5  # the patches were far from white


def _batchnorm_and_keras_reference(momentum=0.9):
  """`models.FusedBatchNorm` and Keras' own BatchNormalization with the same weights, none of them
  at its initial value, for maps [N, 5, 6, 3]."""
  rng = np.random.default_rng(1)
  values = [rng.uniform(0.5, 2, 3), rng.normal(size=3), rng.normal(size=3), rng.uniform(0.5, 2, 3)]
  layers = (models.FusedBatchNorm(momentum=momentum),
            keras.layers.BatchNormalization(momentum=momentum))
  for layer in layers:
    layer.build((None, 5, 6, 3))
    for variable, value in zip(
        (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance), values):
      variable.assign(value.astype('float32'))
  return layers


def _maps(batch=4):
  return np.random.default_rng(2).normal(3, 2, (batch, 5, 6, 3)).astype('float32')


def test_fused_batchnorm_trains_as_keras_batchnormalization_does():
  fused, reference = _batchnorm_and_keras_reference()
  for step in range(2):  # the moving statistics follow Keras' over updates
    x = tf.constant(_maps() + step)
    results = []
    for layer in (fused, reference):
      with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(y * tf.range(1, 4, dtype=tf.float32) * x)
      results.append((y, *tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])))
    for mine, keras_value in zip(*results):
      np.testing.assert_allclose(mine, keras_value, rtol=1e-4, atol=1e-4)
    for name in ('moving_mean', 'moving_variance'):
      np.testing.assert_allclose(getattr(fused, name).numpy(), getattr(reference, name).numpy(),
                                 rtol=1e-5)
  assert [w.name for w in fused.trainable_weights] == ['gamma', 'beta']


def test_fused_batchnorm_infers_and_freezes_as_keras_batchnormalization_does():
  fused, reference = _batchnorm_and_keras_reference()
  x = _maps()
  np.testing.assert_allclose(fused(x), reference(x), rtol=1e-5, atol=1e-5)  # moving statistics
  before = fused.moving_mean.numpy().copy()
  fused.trainable = reference.trainable = False  # frozen: inference mode even when training
  np.testing.assert_allclose(fused(x, training=True), reference(x, training=True), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_array_equal(fused.moving_mean.numpy(), before)


def test_fused_batchnorm_computes_in_bfloat16_and_keeps_float32_weights(mixed_bfloat16):
  fused, reference = _batchnorm_and_keras_reference()
  x = _maps()
  y = fused(x, training=True)
  assert y.dtype == tf.bfloat16
  assert {w.dtype for w in fused.weights} == {'float32'}
  expected = reference(x, training=True)
  np.testing.assert_allclose(tf.cast(y, tf.float32), tf.cast(expected, tf.float32), atol=0.05)


def test_adapt_whitens_the_airbench_input_and_survives_saving(tmp_path):
  model = models.build_model('airbench', 12, 5, stored_image_size=12, width=4)
  pixels = (fixtures.correlated_images() * 40 + 128).astype('float32')  # [0, 255], as served
  batches = iter([pixels[:32], pixels[32:]])
  models.adapt(model, batches)
  assert next(batches, None) is None  # every batch was read
  whitening = model.get_layer('whitening')
  normalized = pixels / 255  # what the layer sees after Normalize ('unit')
  covariance = _covariance_of_responses(whitening, normalized)
  # Uncorrelated; variances L / (L + epsilon) for the patch covariance's eigenvalues L (ascending,
  # as the filters are), here 0.8-1: the small noise of these pixels is near epsilon (5e-4).
  np.testing.assert_allclose(covariance[:12, :12], np.diag(fixtures.whitened_variances(normalized)),
                             atol=1e-3)
  assert [w.name for w in whitening.trainable_weights] == ['bias']  # the filters stay frozen
  path = str(tmp_path / 'airbench.keras')
  model.save(path)
  loaded = keras.models.load_model(path)
  np.testing.assert_allclose(loaded.get_layer('whitening').kernel.numpy(), whitening.kernel.numpy())
  np.testing.assert_allclose(loaded.predict(pixels[:4], verbose=0),
                             model.predict(pixels[:4], verbose=0), rtol=1e-5, atol=1e-5)


def test_adapt_leaves_models_without_data_dependent_layers_and_their_batches_alone():
  def batches():
    raise AssertionError('read')
    yield  # pylint: disable=unreachable

  model = models.build_model('resnet', 32, 5)
  before = [w.numpy().copy() for w in model.weights]
  models.adapt(model, batches())
  assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))


# What each preprocessing mode means (`models.Normalize`, every model's first layer, implements
# these formulas).
NORMALIZATIONS = {
    models.UNIT: lambda x: x / 255,
    models.TF: lambda x: x / 127.5 - 1,
    models.CAFFE: lambda x: x[..., ::-1] - [103.939, 116.779, 123.68],
    models.TORCH: lambda x: (x / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225],
    models.RAW: lambda x: x,
}


@pytest.mark.parametrize('name, application', [
    ('vgg16', keras.applications.vgg16),
    ('mobilenet', keras.applications.mobilenet),
    ('mobilenet_v2', keras.applications.mobilenet_v2),
    ('resnet50', keras.applications.resnet50),
    ('efficientnet_b0', keras.applications.efficientnet),
    ('densenet121', keras.applications.densenet),
])
def test_preprocessing_mode_is_the_applications_own(name, application):
  images = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype('float32')
  expected = application.preprocess_input(images.copy())
  normalize = NORMALIZATIONS[models.MODELS[name].preprocessing]
  np.testing.assert_allclose(normalize(images), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('name', sorted(models.MODELS))
def test_every_model_outputs_logits_at_its_min_size(name):
  spec = models.MODELS[name]
  model = models.build_model(name, spec.min_image_size, 7)
  logits = model(_images(2))
  assert model.input.shape == (None, 32, 32, 3)
  assert logits.shape == (2, 7)
  assert np.all(np.isfinite(keras.ops.convert_to_numpy(logits)))


@pytest.mark.parametrize('name', sorted(models.MODELS))
def test_logits_are_float32_under_mixed_bfloat16(name, mixed_bfloat16):
  model = models.build_model(name, 32, 3)
  assert model.get_layer('logits').compute_dtype == 'float32'
  assert model(_images(1)).dtype == 'float32'
  # The rest of the network does compute in bfloat16.
  assert any(layer.compute_dtype == 'bfloat16' for layer in model.layers)


def test_a_resizing_model_trains_under_mixed_bfloat16(mixed_bfloat16):
  """Keras 3.6's Resizing fails on bfloat16 inputs; the resize layer computes in float32."""
  model = models.build_model('mobilenet', 96, 4, alpha=0.25)
  assert model.get_layer('resize').compute_dtype == 'float32'
  assert model(_images(2), training=True).dtype == 'float32'


def test_resizing_happens_inside_the_model():
  model = models.build_model('mobilenet', 96, 4, alpha=0.25)
  assert model.input.shape == (None, 32, 32, 3)
  assert model.input.name == constants.IMAGE_XF_KEY
  assert model.get_layer('resize').output.shape == (None, 96, 96, 3)
  assert model.get_layer(models.BACKBONE_NAME).input.shape == (None, 96, 96, 3)
  assert model(_images(2)).shape == (2, 4)


def test_no_resizing_at_the_stored_size():
  model = models.build_model('resnet', 32, 4)
  assert 'resize' not in [layer.name for layer in model.layers]


def test_builder_arguments_pass_through():
  model = models.build_model('resnet', 32, 4, dropout=0.3, width=16)
  (dropout,) = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
  assert dropout.rate == 0.3
  assert model.count_params() < models.build_model('resnet', 32, 4).count_params() / 3


def _mobilenet_025(num_classes):
  return models.build_model('mobilenet', 32, num_classes, alpha=0.25)


def test_fine_tune_layers_trainable_counts():
  num_classes = 5
  head = 256 * num_classes + num_classes  # Dense on the 256 pooled features
  model = _mobilenet_025(num_classes)
  total = models.count_params(model)[1]
  assert total == 218_544 + head

  models.set_fine_tune_layers(model, 0)
  assert models.count_params(model) == (head, total)
  models.set_fine_tune_layers(model, MOBILENET_025_LAST_BLOCK_LAYERS)
  assert models.count_params(model) == (MOBILENET_025_LAST_BLOCK_CONV_WEIGHTS + head, total)
  models.set_fine_tune_layers(model, 'all')
  assert models.count_params(model) == (MOBILENET_025_CONV_WEIGHTS + head, total)
  # The whole depth is the same as 'all'; a later call undoes an earlier one.
  models.set_fine_tune_layers(model, models.backbone_depth(model))
  assert models.count_params(model) == (MOBILENET_025_CONV_WEIGHTS + head, total)
  models.set_fine_tune_layers(model, 0)
  assert models.count_params(model) == (head, total)


# Each model's default --fine-tune-layers, from docs/results.md: fine-tuning every MobileNet layer
# (after two head epochs) gave 74.3% on the real photos against 64.8% frozen; no other backbone
# was measured, so they keep the frozen backbone ('0') they had before; from-scratch models have
# no backbone and train every layer.
DEFAULT_FINE_TUNE_LAYERS = {
    'simple_cnn': 'all', 'resnet': 'all', 'airbench': 'all', 'mobilenet': 'all', 'vgg16': '0',
    'mobilenet_v2': '0', 'resnet50': '0', 'efficientnet_b0': '0', 'densenet121': '0'}


def test_default_fine_tune_layers_from_the_measured_evidence():
  assert {name: spec.fine_tune_layers for name, spec in models.MODELS.items()} == (
      DEFAULT_FINE_TUNE_LAYERS)


def test_mobilenet_default_fine_tunes_its_whole_backbone():
  """The table's value works with set_fine_tune_layers: every convolution weight trains."""
  model = _mobilenet_025(5)
  models.set_fine_tune_layers(model, models.get_spec('mobilenet').fine_tune_layers)
  assert models.count_params(model)[0] == MOBILENET_025_CONV_WEIGHTS + 256 * 5 + 5


@pytest.mark.parametrize('fine_tune_layers', [0, 3, 'all'])
def test_backbone_batchnorm_never_trains(fine_tune_layers):
  model = _mobilenet_025(3)
  models.set_fine_tune_layers(model, fine_tune_layers)
  norms = [layer for layer in model.get_layer(models.BACKBONE_NAME).layers
           if isinstance(layer, keras.layers.BatchNormalization)]
  assert len(norms) == 27
  assert not any(layer.trainable or layer.trainable_weights for layer in norms)


def test_from_scratch_batchnorm_trains():
  model = models.build_model('resnet', 32, 3)
  models.set_fine_tune_layers(model, 'all')
  assert models.count_params(model)[0] == model.count_params() - sum(
      2 * layer.gamma.shape[0] for layer in model.layers
      if isinstance(layer, models.FusedBatchNorm))  # only moving statistics are fixed


def test_fine_tune_layers_too_deep():
  model = _mobilenet_025(3)
  depth = models.backbone_depth(model)
  with pytest.raises(ValueError, match=f'{depth} layers'):
    models.set_fine_tune_layers(model, depth + 1)


@pytest.mark.parametrize('fine_tune_layers', [-1, 'some', 2.5, True])
def test_fine_tune_layers_invalid_values(fine_tune_layers):
  with pytest.raises(ValueError, match='fine_tune_layers'):
    models.set_fine_tune_layers(_mobilenet_025(3), fine_tune_layers)


@pytest.mark.parametrize('fine_tune_layers', [0, 4])
def test_fine_tune_layers_without_backbone(fine_tune_layers):
  model = models.build_model('simple_cnn', 32, 3)
  with pytest.raises(ValueError, match="'all'"):
    models.set_fine_tune_layers(model, fine_tune_layers)
  with pytest.raises(ValueError, match='backbone'):
    models.backbone_depth(model)


def test_unknown_model():
  with pytest.raises(ValueError, match='known models: .*simple_cnn'):
    models.build_model('resnet18', 32, 3)


def test_image_size_below_minimum():
  with pytest.raises(ValueError, match='at least 32x32'):
    models.build_model('mobilenet_v2', 24, 3)


def test_missing_weights_file(tmp_path):
  path = str(tmp_path / 'missing.h5')
  with pytest.raises(ValueError, match='missing.h5'):
    models.build_model('mobilenet', 96, 3, weights=path, alpha=0.25)


def test_weights_for_a_model_without_backbone():
  with pytest.raises(ValueError, match='no ImageNet backbone'):
    models.build_model('resnet', 32, 3, weights='imagenet')


def test_argument_the_builder_does_not_take():
  with pytest.raises(ValueError, match='alpha'):
    models.build_model('vgg16', 32, 3, alpha=0.5)
  with pytest.raises(ValueError, match='width'):
    models.build_model('simple_cnn', 32, 3, width=8)


@needs_weights_file
@pytest.mark.parametrize('name, alpha', [('mobilenet', 0.5), ('mobilenet_v2', 1.0)])
def test_weights_file_of_another_architecture(name, alpha):
  with pytest.raises(ValueError, match='does not fit model') as error:
    models.build_model(name, 96, 3, weights=MOBILENET_025_WEIGHTS, alpha=alpha)
  assert '\n' not in str(error.value)


@needs_weights_file
def test_loads_imagenet_weights_file():
  model = models.build_model('mobilenet', 96, 3, weights=MOBILENET_025_WEIGHTS, alpha=0.25)
  reference = keras.applications.MobileNet(
      input_shape=(96, 96, 3), alpha=0.25, include_top=False, weights=MOBILENET_025_WEIGHTS)
  backbone = model.get_layer(models.BACKBONE_NAME)
  assert len(backbone.weights) == len(reference.weights)
  for ours, theirs in zip(backbone.weights, reference.weights):
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
  # Not a coincidence of initializers: a random backbone differs.
  random = models.build_model('mobilenet', 96, 3, alpha=0.25).get_layer(models.BACKBONE_NAME)
  assert not np.array_equal(random.get_layer('conv1').kernel.numpy(),
                            backbone.get_layer('conv1').kernel.numpy())


@pytest.mark.parametrize('name, dropout, pooled_first', [('vgg16', 0.5, False),
                                                         ('mobilenet', 0.2, True)])
def test_transfer_head_default_dropout_and_order(name, dropout, pooled_first):
  """The course notebook's vgg16 drops out on the feature map; the other heads after pooling."""
  def dropout_layer(model):
    (layer,) = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    return layer

  layer = dropout_layer(models.build_model(name, 32, 3))
  assert layer.rate == dropout
  assert len(layer.input.shape) == (2 if pooled_first else 4)
  assert dropout_layer(models.build_model(name, 32, 3, dropout=0.1)).rate == 0.1


def _requests_to(monkeypatch, answer):
  """Routes keras.applications' weight downloads to `answer(fname, origin)`; returns the log."""
  requested = []

  def get_file(fname=None, origin=None, **kwargs):
    requested.append((fname, origin))
    return answer(fname, origin)

  # keras.applications call keras.src.utils.file_utils.get_file (keras.utils.get_file is the same
  # function under another module's name, which they do not look up).
  monkeypatch.setattr(file_utils, 'get_file', get_file)
  return requested


def test_imagenet_weights_without_internet(monkeypatch):
  """What keras raises on a machine without internet, whatever this one has (and its cache)."""

  def offline(fname, origin):
    # keras' own message for a urllib.error.URLError (file_utils.get_file).
    raise Exception(f'URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in '
                    'name resolution')

  requested = _requests_to(monkeypatch, offline)
  with pytest.raises(Exception, match='URL fetch failure') as error:
    models.build_model('mobilenet', 96, 3, weights='imagenet', alpha=0.25)
  assert 'does not fit' not in str(error.value)  # not mistaken for a bad weights file
  assert [fname for fname, _ in requested] == [os.path.basename(MOBILENET_025_WEIGHTS)]


@needs_weights_file
def test_imagenet_weights_are_the_applications_own_file(monkeypatch):
  requested = _requests_to(monkeypatch, lambda fname, origin: MOBILENET_025_WEIGHTS)
  model = models.build_model('mobilenet', 96, 3, weights='imagenet', alpha=0.25)
  ((fname, origin),) = requested
  assert fname == os.path.basename(MOBILENET_025_WEIGHTS) and origin.endswith('/' + fname)
  from_file = models.build_model('mobilenet', 96, 3, weights=MOBILENET_025_WEIGHTS, alpha=0.25)
  for ours, theirs in zip(model.get_layer(models.BACKBONE_NAME).weights,
                          from_file.get_layer(models.BACKBONE_NAME).weights):
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
