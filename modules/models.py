"""Model builders, one per architecture family, and the registry the Trainer and Tuner read.

Every builder has the shape of keras-io's `make_model(input_shape, num_classes)`: the linear
`x = layer(x)` functional style, every value from its arguments, an uncompiled `keras.Model` out.
All models take the Transform output `image_xf` (pixels in [0, 255]), normalize it in their first
layer the way the architecture expects (`ModelSpec.preprocessing`, `modules.transform.normalize`:
the training input, the exported model and every serving signature then apply the same function),
may resize it inside the graph (so serving resizes the same way), and return LOGITS from a
float32 Dense: safe under a mixed_float16 / mixed_bfloat16 global policy.

Transfer models nest their keras.applications base model as one layer named `BACKBONE_NAME`,
called with `training=False` so its BatchNorm layers stay in inference mode even when unfrozen
(the Keras transfer learning guide); `set_fine_tune_layers` picks which of its layers train.
"""
import dataclasses
import inspect
import math
import os
import warnings
from typing import Callable, Dict, FrozenSet, Iterable, Optional, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

from base import constants
from modules import transform

BACKBONE_NAME = 'backbone'  # the nested ImageNet base model of every transfer model

# Input normalizations (`ModelSpec.preprocessing`), as keras.applications' preprocess_input modes.
UNIT = 'unit'  # x / 255
TF = 'tf'  # x / 127.5 - 1
CAFFE = 'caffe'  # RGB -> BGR, then minus the ImageNet mean [103.939, 116.779, 123.68] (BGR)
TORCH = 'torch'  # x / 255, minus mean [0.485, 0.456, 0.406], over std [0.229, 0.224, 0.225]
RAW = 'raw'  # x unchanged in [0, 255]: the model rescales internally
PREPROCESSING_MODES = (UNIT, TF, CAFFE, TORCH, RAW)


@keras.saving.register_keras_serializable(package='cifar100_tfx')
class Normalize(keras.layers.Layer):
  """Pixels in [0, 255] -> the input range of a model family (`modules.transform.normalize`).

  float32 under any policy, as Transform computed it before it materialised plain pixels: the
  next layer casts to the policy's compute dtype itself.
  """

  def __init__(self, mode: str, **kwargs):
    kwargs.setdefault('dtype', 'float32')
    super().__init__(**kwargs)
    transform.normalize_pixels(keras.ops.zeros([1, 3]), mode)  # ValueError if unknown
    self.mode = mode

  def call(self, pixels):
    return transform.normalize_pixels(pixels, self.mode)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), 'mode': self.mode}


def _image_input(input_shape, image_size, preprocessing):
  """The model input (the stored pixels) and the tensor the architecture sees."""
  inputs = keras.Input(shape=input_shape, name=constants.IMAGE_XF_KEY)
  x = Normalize(preprocessing, name='normalize')(inputs)
  if image_size is not None and tuple(input_shape[:2]) != (image_size, image_size):
    # float32 under any policy: Keras 3.6's Resizing fails on bfloat16 inputs ("data type
    # bfloat16 not inexact"); the next layer casts to the policy's compute dtype itself.
    x = keras.layers.Resizing(image_size, image_size, name='resize', dtype='float32')(x)
  return inputs, x


def _logits(x, num_classes):
  # float32 even under a mixed precision policy: softmax and the loss need the range.
  return keras.layers.Dense(num_classes, dtype='float32', name='logits')(x)


def _backbone(application, x, weights, **kwargs):
  """Builds a keras.applications base model for tensor x and calls it in inference mode."""
  with warnings.catch_warnings():
    # MobileNet v1/v2 warn that they load the 224 px ImageNet weights for other sizes; without
    # the top, the weights are convolution kernels whatever the input size, so this is harmless.
    warnings.filterwarnings('ignore', message='`input_shape` is undefined or non-square')
    base = application(include_top=False, weights=weights, input_shape=x.shape[1:], **kwargs)
  # Renamed afterwards, not through `name=`: EfficientNet derives its weights file name from it.
  base.name = BACKBONE_NAME
  return base(x, training=False)


@keras.saving.register_keras_serializable(package='cifar100_tfx')
class FusedBatchNorm(keras.layers.Layer):
  """`keras.layers.BatchNormalization` over the channels of [N, H, W, C] maps, run as TensorFlow's
  fused kernel (FusedBatchNormV3, oneDNN's on x86 CPUs).

  Keras 3 builds BatchNorm from separate ops (casts, moments, normalization), each a pass over the
  activation maps in training and again in the gradient; the fused kernel makes one pass each way.
  The math, weights and moving statistics are Keras' (`momentum`, `epsilon`, gamma, beta, and a
  moving variance of the biased batch variance), so results match the Keras layer to rounding;
  steps of the resnet and airbench are shorter with it on a 2-core CPU (docs/benchmarks.md).
  TensorFlow only, as the project is.
  """

  def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs):
    super().__init__(**kwargs)
    self.momentum = float(momentum)
    self.epsilon = float(epsilon)

  def build(self, input_shape):
    # float32 under a mixed policy, as Keras' layer keeps them: the fused kernel wants them so.
    def weight(name, initializer, trainable=True):
      return self.add_weight(name=name, shape=(int(input_shape[-1]),), initializer=initializer,
                             trainable=trainable, autocast=False)
    self.gamma = weight('gamma', 'ones')
    self.beta = weight('beta', 'zeros')
    self.moving_mean = weight('moving_mean', 'zeros', trainable=False)
    self.moving_variance = weight('moving_variance', 'ones', trainable=False)

  def call(self, x, training=None):
    if not (training and self.trainable):
      return tf.raw_ops.FusedBatchNormV3(
          x=x, scale=self.gamma.value, offset=self.beta.value, mean=self.moving_mean.value,
          variance=self.moving_variance.value, epsilon=self.epsilon, is_training=False)[0]
    empty = tf.zeros([0], tf.float32)
    y, mean, variance = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=self.gamma.value, offset=self.beta.value, mean=empty, variance=empty,
        epsilon=self.epsilon, is_training=True)[:3]
    # The kernel's batch variance has Bessel's correction; Keras' moving variance does not.
    count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
    variance *= (count - 1) / count
    for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
      moving.assign(moving * self.momentum + batch * (1 - self.momentum))
    return y

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), 'momentum': self.momentum, 'epsilon': self.epsilon}


def _relu():
  return keras.layers.Activation('relu')


def _conv_bn_act(x, filters, pool=False, activation=_relu):
  """Conv-(maxpool)-BN-activation; `activation` makes the activation layer."""
  x = keras.layers.Conv2D(filters, 3, padding='same', use_bias=False)(x)
  if pool:
    # Pool before BatchNorm and the activation, as airbench does: a quarter of their work.
    x = keras.layers.MaxPooling2D(2)(x)
  # Keras' default momentum 0.99 averages the statistics over ~100 steps; in short CPU runs the
  # eval-mode statistics then lag the weights (measured: chance accuracy after a first epoch
  # that reached 40% in training mode). 0.9 is PyTorch's default, which ResNet-9 and airbench use.
  x = FusedBatchNorm(momentum=0.9)(x)
  return activation()(x)


def simple_cnn(input_shape, num_classes, *, image_size=None, preprocessing=UNIT):
  """The course notebook's CNN: three 3x3 convolutions, two max-pools, a 64-unit Dense layer.

  Args:
    input_shape: shape of one input image, e.g. (32, 32, 3).
    num_classes: number of output logits.
    image_size: resize the input to image_size x image_size inside the model; None: don't.
    preprocessing: the normalization of the first layer (`build_model` passes the spec's).

  Returns:
    An uncompiled keras.Model; 121,920 + 65 * num_classes parameters at 32x32.
  """
  inputs, x = _image_input(input_shape, image_size, preprocessing)
  x = keras.layers.Conv2D(32, 3, activation='relu')(x)
  x = keras.layers.MaxPooling2D()(x)
  x = keras.layers.Conv2D(64, 3, activation='relu')(x)
  x = keras.layers.MaxPooling2D()(x)
  x = keras.layers.Conv2D(64, 3, activation='relu')(x)
  x = keras.layers.Flatten()(x)
  x = keras.layers.Dense(64, activation='relu')(x)
  return keras.Model(inputs, _logits(x, num_classes), name='simple_cnn')


def resnet(input_shape, num_classes, width=32, dropout=0.2, *, image_size=None,
           preprocessing=UNIT):
  """A small ResNet for 32x32 images, after the ResNet-9 of DAWNBench and airbench.

  A 3x3 stem of width // 2 channels, then three stages of width w, 2w and 4w channels at 32, 16
  and 8 px: a conv-maxpool-BN-ReLU step that halves the resolution, then a residual block of two
  conv-BN-ReLU. Global max pooling, dropout, and a linear head on features scaled by 1/8.
  Each of the nine convolutions after the stem costs 4608 * w**2 multiply-adds per 32x32 image;
  parameters are 472.5 * w**2 + 99.5 * w + (4 * w + 1) * num_classes. At the default w=32: 29M
  multiply-adds, 487,669 parameters for 5 classes, 499,924 for 100, and a training step about
  4x as long as simple_cnn's on a CPU.

  Args:
    input_shape: shape of one input image, e.g. (32, 32, 3).
    num_classes: number of output logits.
    width: channels of the first stage.
    dropout: dropout rate before the final Dense layer.
    image_size: resize the input to image_size x image_size inside the model; None: don't.
    preprocessing: the normalization of the first layer (`build_model` passes the spec's).

  Returns:
    An uncompiled keras.Model.
  """
  if isinstance(width, bool) or not isinstance(width, int) or width < 2:
    raise ValueError(f'--width {width}: the resnet needs a whole number of 2 or more channels')
  inputs, x = _image_input(input_shape, image_size, preprocessing)
  x = _conv_bn_act(x, width // 2)
  for filters in (width, 2 * width, 4 * width):
    x = _conv_bn_act(x, filters, pool=True)
    y = _conv_bn_act(x, filters)
    y = _conv_bn_act(y, filters)
    x = keras.layers.Add()([x, y])
  return keras.Model(inputs, _max_pooled_head(x, num_classes, dropout), name='resnet')


def _max_pooled_head(x, num_classes, dropout):
  x = keras.layers.GlobalMaxPooling2D()(x)
  x = keras.layers.Dropout(dropout)(x)
  # Max-pooled sums of ReLU outputs are large: ResNet-9 scales its logits by 1/8 so the first
  # steps don't start from a confident, wrong softmax. Scaling the features keeps Dense last.
  x = keras.layers.Rescaling(0.125)(x)
  return _logits(x, num_classes)


@keras.saving.register_keras_serializable(package='cifar100_tfx')
class PatchWhitening(keras.layers.Layer):
  """airbench's first layer: a frozen 'valid' convolution over `patch_size` patches whose filters
  whiten the patches of the training images, in pairs of opposite sign, plus a trainable bias.

  `adapt(images)` sets the filters from data: with V and L the eigenvectors and eigenvalues of the
  patches' covariance, the filters V / sqrt(L + epsilon) give the patches uncorrelated responses
  of variance L / (L + epsilon), about 1 except along directions in which they hardly vary; their
  negatives let the ReLU after the layer keep both signs. Before `adapt` the filters are random
  (Glorot), a frozen random projection.
  """

  def __init__(self, patch_size: int = 2, epsilon: float = 5e-4, **kwargs):
    super().__init__(**kwargs)
    self.patch_size = int(patch_size)
    self.epsilon = float(epsilon)

  def build(self, input_shape):
    side, channels = self.patch_size, int(input_shape[-1])
    filters = 2 * side * side * channels
    self.kernel = self.add_weight(name='kernel', shape=(side, side, channels, filters),
                                  initializer='glorot_uniform', trainable=False)
    self.bias = self.add_weight(name='bias', shape=(filters,), initializer='zeros')

  def call(self, x):
    return keras.ops.conv(x, self.kernel, padding='valid') + self.bias

  def compute_output_shape(self, input_shape):
    batch, height, width, channels = input_shape
    side = self.patch_size
    return (batch, height - side + 1, width - side + 1, 2 * side * side * channels)

  def adapt(self, images) -> None:
    """Sets the filters from images [N, H, W, C] as this layer receives them."""
    images = np.asarray(images, dtype=np.float32)  # np.cov computes in float64
    if not self.built:
      self.build(images.shape)
    side, channels = self.patch_size, images.shape[-1]
    # [N, H', W', C, side, side] -> rows in the kernel's (row, column, channel) order.
    patches = np.lib.stride_tricks.sliding_window_view(images, (side, side), axis=(1, 2))
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, side * side * channels)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(patches, rowvar=False))
    kernel = (eigenvectors / np.sqrt(eigenvalues + self.epsilon)).reshape(
        side, side, channels, -1)
    self.kernel.assign(np.concatenate([kernel, -kernel], axis=-1).astype('float32'))

  def get_config(self):
    return {**super().get_config(), 'patch_size': self.patch_size, 'epsilon': self.epsilon}


@keras.saving.register_keras_serializable(package='cifar100_tfx')
def gelu_tanh(x):
  """GELU in its tanh approximation, airbench's activation, as separate ops (`GeluTanh` runs it in
  inference; it trains with a compiled kernel)."""
  return keras.activations.gelu(x, approximate=True)


_GELU_C = math.sqrt(2 / math.pi)


def _gelu_tanh_of(v):
  """tanh(sqrt(2 / pi) (v + 0.044715 v^3)), the tanh both GELU kernels need."""
  return tf.tanh(_GELU_C * (v + 0.044715 * v**3))


@tf.function(jit_compile=True)
def _gelu_tanh_kernel(x):
  v = tf.cast(x, tf.float32)
  return tf.cast(0.5 * v * (1 + _gelu_tanh_of(v)), x.dtype)


@tf.function(jit_compile=True)
def _gelu_tanh_gradient_kernel(x, dy):
  v = tf.cast(x, tf.float32)
  t = _gelu_tanh_of(v)
  slope = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * _GELU_C * (1 + 3 * 0.044715 * v * v)
  return tf.cast(tf.cast(dy, tf.float32) * slope, dy.dtype)


@tf.custom_gradient
def _compiled_gelu_tanh(x):
  return _gelu_tanh_kernel(x), lambda dy: _gelu_tanh_gradient_kernel(x, dy)


@keras.saving.register_keras_serializable(package='cifar100_tfx')
class GeluTanh(keras.layers.Layer):
  """`gelu_tanh` as a layer that trains with one compiled (XLA) kernel each way.

  As separate ops GELU's tanh approximation is about ten passes over the activation maps in
  training and more in the gradient: on a 2-core CPU in bfloat16 an airbench step took 1.16x as
  long as with ReLU, against 1.04x with the two compiled kernels (docs/benchmarks.md). Only
  training compiles: inference, hence the exported model and every serving signature, runs
  `gelu_tanh`'s plain ops, which any TensorFlow runtime serves (TF Serving's CPU XLA is off by
  default). The kernels compute in float32 under a mixed policy and return the input's dtype.
  """

  def call(self, x, training=None):
    return _compiled_gelu_tanh(x) if training else gelu_tanh(x)

  def compute_output_shape(self, input_shape):
    return input_shape


def adapt(model: keras.Model, batches: Iterable) -> None:
  """Sets a model's data-dependent layers (`PatchWhitening`) from batches of its input images;
  models without such layers are left as they are, and the batches unread."""
  layers = [layer for layer in model.layers if isinstance(layer, PatchWhitening)]
  if not layers:
    return
  images = np.concatenate([np.asarray(batch) for batch in batches])
  for layer in layers:
    layer.adapt(keras.Model(model.input, layer.input).predict(images, verbose=0))


def airbench(input_shape, num_classes, width=48, dropout=0.2, *, image_size=None,
             preprocessing=UNIT):
  """A wide, shallow network after airbench94 (Jordan, 2024, "94% on CIFAR-10 in 3.29 seconds").

  A frozen whitening of 2x2 patches (`PatchWhitening`: 24 channels, set from the training images
  by `adapt`), GELU, then three stages of w, 4w and 4w channels at 31, 15 and 7 px, each a
  conv-maxpool-BN-GELU and a conv-BN-GELU. Global max pooling, dropout, and the resnet's head on
  features scaled by 1/8. Like airbench94 it uses GELU (`GeluTanh`, which bought 0.4-0.8 points at
  equal epochs over ReLU); unlike it, it keeps the resnet's BatchNorm and the project's optimizer
  and schedule. At w=48: 69M multiply-adds per 32x32 image, 2.4x the resnet's default, for a step
  about 2.2x as long on a 2-core CPU without AMX in bfloat16 (docs/benchmarks.md).

  The arguments are `resnet`'s. Returns an uncompiled keras.Model; call `adapt` on it with
  training images before training (`trainer.train` does).
  """
  if isinstance(width, bool) or not isinstance(width, int) or width < 1:
    raise ValueError(f'--width {width}: airbench needs a whole number of 1 or more channels')
  inputs, x = _image_input(input_shape, image_size, preprocessing)
  x = PatchWhitening(2, name='whitening')(x)
  x = GeluTanh()(x)
  for filters in (width, 4 * width, 4 * width):
    x = _conv_bn_act(x, filters, pool=True, activation=GeluTanh)
    x = _conv_bn_act(x, filters, activation=GeluTanh)
  return keras.Model(inputs, _max_pooled_head(x, num_classes, dropout), name='airbench')


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A keras.applications base model and the head `transfer_model` puts on it."""
  application: Callable[..., keras.Model]  # keras.applications constructor, e.g. MobileNet
  dropout: float = 0.2  # the head's default dropout rate
  # The course notebook's vgg16 drops out on the feature map before pooling; the others after.
  dropout_before_pooling: bool = False
  options: Tuple[str, ...] = ()  # constructor arguments a user may set, e.g. MobileNet's alpha


def transfer_model(input_shape, num_classes, backbone: Backbone, weights=None, dropout=None, *,
                   image_size=None, preprocessing=RAW, name='transfer', **options):
  """Every transfer model: a keras.applications backbone, average pooling, dropout, Dense.

  Args:
    input_shape: shape of one input image, e.g. (32, 32, 3).
    num_classes: number of output logits.
    backbone: the `Backbone` row of the architecture.
    weights: None (random), 'imagenet', or the path of the application's no-top .h5 weights
      file (for the same `options`, e.g. the same alpha).
    dropout: dropout rate of the head; None: the backbone's default.
    image_size: resize the input to image_size x image_size inside the model; None: don't.
    preprocessing: the normalization of the first layer (`build_model` passes the spec's).
    name: the model's name.
    **options: constructor arguments listed in `backbone.options`, e.g. alpha=0.25.

  Returns:
    An uncompiled keras.Model; vgg16 has 14,714,688 + 513 * num_classes parameters.
  """
  dropout = backbone.dropout if dropout is None else dropout
  inputs, x = _image_input(input_shape, image_size, preprocessing)
  x = _backbone(backbone.application, x, weights, **options)
  if backbone.dropout_before_pooling:
    x = keras.layers.Dropout(dropout)(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  if not backbone.dropout_before_pooling:
    x = keras.layers.Dropout(dropout)(x)
  return keras.Model(inputs, _logits(x, num_classes), name=name)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What the pipeline needs to know about an architecture besides its builder's arguments."""
  builder: Callable[..., keras.Model]  # a from-scratch builder, or transfer_model
  preprocessing: str  # the input normalization it expects, one of PREPROCESSING_MODES
  min_image_size: int  # smallest image side the architecture accepts
  default_image_size: int  # image side it is trained at unless told otherwise
  backbone: Optional[Backbone] = None  # transfer models: the ImageNet base model
  # The optimizer and peak learning rate it trains with unless told otherwise (docs/results.md).
  optimizer: str = 'adam'
  learning_rate: float = 1e-3
  # Transfer models: the backbone layers it fine-tunes unless told otherwise (--fine-tune-layers:
  # '0' frozen, 'K' the top K, 'all'). From-scratch models train every layer: 'all'.
  fine_tune_layers: str = '0'

  @property
  def transfer(self) -> bool:
    """Has an ImageNet backbone named BACKBONE_NAME."""
    return self.backbone is not None


# Preprocessing modes are those of each keras.applications.<module>.preprocess_input (keras 3.6).
# Minimum sizes: keras.applications' own `min_size` (32 for all six); simple_cnn's three valid
# convolutions and two pools need 18 px; the resnet's three pools need 8, airbench's 2x2 whitening
# and three pools 9.
# Default sizes: the from-scratch models and vgg16 (the notebook's setting) see the stored 32 px
# images. Backbones built for 224 px end 32x smaller: at 32 px their last feature map is 1x1,
# so the light ones (~55-105M multiply-adds per image at 96 px) default to 96 (a 3x3 map), and
# resnet50 and densenet121 (~750M and ~530M at 96 px) to 64, which keeps them near vgg16's cost at
# 32 px (~315M) on a CPU.
# Optimizers: Adam at 1e-3 suits the course's simple_cnn and every transfer head (SGD at 0.1
# overshoots a head on ImageNet features and, at 0.01, wrecks a backbone whose BatchNorm is frozen:
# chance accuracy after one fine-tuning epoch, measured on mobilenet). The resnet trains best with
# SGD-Nesterov at 0.1, which also makes --weight-decay the classic L2 (+3 points over Adam), and
# better with Muon for its convolution kernels and that SGD for the rest (+1.8 points at 45 epochs,
# 3 at 11; airbench +1.1-1.6 at its 27-29 in 12 minutes; docs/results.md).
# Layers to fine-tune: mobilenet fine-tunes 'all' (after --head-epochs of the head alone), measured
# on the real photos of docs/results.md with the ImageNet weights: 74.3% against 64.8% frozen, +9.5
# points for 97 s of training against 34 s (alpha 0.25, 96 px). The other backbones keep '0' (a
# frozen feature extractor, the behaviour before this column): no run of theirs was measured here
# (their ImageNet weights cannot be fetched on this project's machines), and frozen is the cheap,
# safe start on a CPU (no backward pass through the backbone: half the step time of mobilenet's
# fine-tuning, 41.8 against 82.9 ms/step). From-scratch models have no backbone: 'all'.
# Backbone options: ImageNet weights exist for MobileNet alpha 0.25, 0.5, 0.75 and 1.0, and for
# MobileNetV2 alpha 0.35, 0.5, 0.75, 1.0, 1.3 and 1.4. EfficientNet rescales [0, 255] inputs itself
# and adds one more normalization layer only for weights='imagenet', not for a weights file path,
# so a path to the same ImageNet file gives slightly different features than 'imagenet'.
MODELS: Dict[str, ModelSpec] = {
    # name: ModelSpec(builder, preprocessing, min_image_size, default_image_size[, backbone,
    #                 optimizer, learning_rate, fine_tune_layers])
    'simple_cnn': ModelSpec(simple_cnn, UNIT, 18, 32, fine_tune_layers='all'),
    'resnet': ModelSpec(resnet, UNIT, 8, 32, optimizer='muon', learning_rate=0.1,
                        fine_tune_layers='all'),
    'airbench': ModelSpec(airbench, UNIT, 9, 32, optimizer='muon', learning_rate=0.1,
                          fine_tune_layers='all'),
    'vgg16': ModelSpec(transfer_model, CAFFE, 32, 32, Backbone(
        keras.applications.VGG16, dropout=0.5, dropout_before_pooling=True)),
    'mobilenet': ModelSpec(transfer_model, TF, 32, 96, Backbone(
        keras.applications.MobileNet, options=('alpha',)), fine_tune_layers='all'),
    'mobilenet_v2': ModelSpec(transfer_model, TF, 32, 96, Backbone(
        keras.applications.MobileNetV2, options=('alpha',))),
    'resnet50': ModelSpec(transfer_model, CAFFE, 32, 64, Backbone(keras.applications.ResNet50)),
    'efficientnet_b0': ModelSpec(transfer_model, RAW, 32, 96, Backbone(
        keras.applications.EfficientNetB0)),
    'densenet121': ModelSpec(transfer_model, TORCH, 32, 64, Backbone(
        keras.applications.DenseNet121)),
}


def get_spec(name: str) -> ModelSpec:
  """The registry entry of a model name; ValueError listing the known names otherwise."""
  if name not in MODELS:
    raise ValueError(f'Unknown model {name!r}; known models: {", ".join(sorted(MODELS))}')
  return MODELS[name]


# Arguments `build_model` itself passes to every builder, or to transfer models.
_BUILD_ARGUMENTS = ('input_shape', 'num_classes', 'image_size', 'preprocessing', 'backbone',
                    'weights', 'name')


def builder_arguments(name: str) -> FrozenSet[str]:
  """The architecture arguments a model takes: dropout, resnet's width, MobileNet's alpha..."""
  spec = get_spec(name)
  options = spec.backbone.options if spec.transfer else ()
  parameters = inspect.signature(spec.builder).parameters
  return frozenset(p for p in parameters if p not in _BUILD_ARGUMENTS and
                   parameters[p].kind != inspect.Parameter.VAR_KEYWORD) | frozenset(options)


def build_model(name: str,
                image_size: int,
                num_classes: int,
                stored_image_size: int = 32,
                weights: Optional[str] = None,
                alpha: float = 1.0,
                dropout: Optional[float] = None,
                **kwargs) -> keras.Model:
  """Builds a registered model for stored_image_size images, resized to image_size inside it.

  Args:
    name: a key of MODELS.
    image_size: side of the images the architecture sees.
    num_classes: number of output logits.
    stored_image_size: side of the images the model receives (the Transform output).
    weights: transfer models only: None (random), 'imagenet' or the path of a no-top .h5 file.
    alpha: width multiplier of mobilenet and mobilenet_v2 (must stay 1.0 for the others).
    dropout: dropout rate; None: the builder's default.
    **kwargs: further builder arguments, e.g. `width` for resnet; None: the builder's default.

  Returns:
    An uncompiled keras.Model with input `image_xf` of shape
    (stored_image_size, stored_image_size, 3), pixels in [0, 255] (normalized in its first layer,
    `Normalize`), and num_classes float32 logits.

  Raises:
    ValueError: unknown model, image_size below the model's minimum, an argument the builder
      does not take, a weights file that does not exist or does not fit the architecture.
  """
  spec = get_spec(name)
  if image_size < spec.min_image_size:
    raise ValueError(f'Model {name!r} needs images of at least {spec.min_image_size}x'
                     f'{spec.min_image_size} px; got image_size={image_size}')
  is_path = weights not in (None, 'imagenet')
  if weights is not None and not spec.transfer:
    raise ValueError(f'Model {name!r} has no ImageNet backbone; weights must be None, '
                     f'got {weights!r}')
  if is_path and not os.path.exists(weights):
    raise ValueError(f'Weights file not found: {weights}')

  accepted = builder_arguments(name)
  arch_kwargs = {key: value for key, value in kwargs.items() if value is not None}
  if 'alpha' in accepted:
    arch_kwargs['alpha'] = alpha
  elif alpha != 1.0:
    raise ValueError(f'Model {name!r} has no width multiplier alpha; got alpha={alpha}')
  if dropout is not None:
    arch_kwargs['dropout'] = dropout
  unknown = sorted(set(arch_kwargs) - accepted)
  if unknown:
    raise ValueError(f'Model {name!r} does not take {", ".join(unknown)}')
  if spec.transfer:
    arch_kwargs.update(backbone=spec.backbone, weights=weights, name=name)

  input_shape = (stored_image_size, stored_image_size, 3)
  try:
    return spec.builder(input_shape, num_classes, image_size=image_size,
                        preprocessing=spec.preprocessing, **arch_kwargs)
  except (ValueError, OSError) as e:
    if not is_path:
      raise
    # Keras' message ("Layer count mismatch...", "Shape mismatch...") can be many lines long.
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    arch = f'{name!r} with alpha={alpha}' if 'alpha' in accepted else repr(name)
    raise ValueError(f'Weights file {weights} does not fit model {arch}: {reason}') from e


def _set_trainable(layer, trainable):
  # Keras 3 on TensorFlow ignores `layer.trainable = value` when layer.trainable already equals
  # value, without passing it on to nested layers: set every nested layer explicitly.
  layer.trainable = trainable
  for sublayer in getattr(layer, 'layers', []):
    _set_trainable(sublayer, trainable)


def _get_backbone(model: keras.Model) -> Optional[keras.Model]:
  try:
    return model.get_layer(BACKBONE_NAME)
  except ValueError:
    return None


def backbone_depth(model: keras.Model) -> int:
  """Number of layers of a transfer model's backbone, the unit `fine_tune_layers` counts."""
  backbone = _get_backbone(model)
  if backbone is None:
    raise ValueError(f'Model {model.name!r} has no {BACKBONE_NAME!r} layer')
  return len(backbone.layers)


def set_fine_tune_layers(model: keras.Model, fine_tune_layers: Union[int, str]) -> None:
  """Chooses which layers train; call it before `compile()`.

  Args:
    model: a model from `build_model`.
    fine_tune_layers: 0: train only the head (the backbone is a frozen feature extractor);
      K > 0: also the top K layers of the backbone (`backbone_depth` counts them); 'all': every
      layer. The backbone's BatchNormalization layers never train: they keep their ImageNet
      statistics and scales, as in the Keras transfer learning guide. Models without a backbone
      accept only 'all'.

  Raises:
    ValueError: fine_tune_layers is not 'all' or an int in [0, backbone depth], or is not 'all'
      for a model without a backbone.
  """
  if fine_tune_layers != 'all' and (
      isinstance(fine_tune_layers, bool) or not isinstance(fine_tune_layers, int) or
      fine_tune_layers < 0):
    raise ValueError(f"fine_tune_layers must be 'all' or an int >= 0; got {fine_tune_layers!r}")
  backbone = _get_backbone(model)
  if backbone is None and fine_tune_layers != 'all':
    raise ValueError(f'Model {model.name!r} has no {BACKBONE_NAME!r} to freeze: '
                     f"fine_tune_layers must be 'all'; got {fine_tune_layers!r}")
  depth = len(backbone.layers) if backbone is not None else 0
  if fine_tune_layers != 'all' and fine_tune_layers > depth:
    raise ValueError(f'fine_tune_layers={fine_tune_layers} exceeds the depth of the backbone of '
                     f'{model.name!r}: {depth} layers')

  _set_trainable(model, True)  # undoes earlier calls
  if backbone is None:
    return
  if fine_tune_layers == 0:
    _set_trainable(backbone, False)
    return
  frozen = [] if fine_tune_layers == 'all' else backbone.layers[:depth - fine_tune_layers]
  for layer in frozen:
    _set_trainable(layer, False)
  for layer in backbone.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.trainable = False


def count_params(model: keras.Model) -> Tuple[int, int]:
  """(trainable, total) parameter counts of a model, as `model.summary()` reports them."""
  trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
  return trainable, model.count_params()
