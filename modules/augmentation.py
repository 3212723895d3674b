"""On-the-fly augmentation of training batches: none, basic (flip, pad-and-crop) or strong, and
cutout on top of any of them.

Augmentation runs in tf.data on the train split only, never in Transform: Transform's output
stays deterministic and cacheable, and each epoch sees new variations of every image. All ops
are range-agnostic (images arrive already normalized by the model's preprocessing) and draw
their randomness per image from a stateless seed, so results follow the seed, not thread timing.
"""
import math
from typing import Callable, Sequence, Tuple, Union

import keras
import tensorflow as tf

AUGMENTATIONS = ('none', 'basic', 'strong')

# Augmentation strengths.
_CROP_PAD_FRACTION = 1 / 8  # pad-and-crop shift, as a fraction of the side: 4 px at 32x32
_MAX_ROTATION_DEGREES = 15.0
_MAX_ZOOM = 0.10  # scale in [0.9, 1.1]
_CONTRAST_RANGE = (0.8, 1.2)

AugmentFn = Callable[..., Tuple[tf.Tensor, tf.Tensor]]


def check_level(level: str) -> None:
  """Raises ValueError naming the valid levels unless `level` is one of `AUGMENTATIONS`."""
  if level not in AUGMENTATIONS:
    raise ValueError(
        f'Unknown augmentation level {level!r}; expected one of: {", ".join(AUGMENTATIONS)}.')


def _image_hw(image_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
  if isinstance(image_size, int):
    return image_size, image_size
  height, width = image_size
  return int(height), int(width)


def _reflect_index(index: tf.Tensor, size: int) -> tf.Tensor:
  """Maps indices in [-(size-1), 2(size-1)] into [0, size) by reflection without edge repeat."""
  return (size - 1) - tf.abs((size - 1) - tf.abs(index))


def _flip_and_crop(images: tf.Tensor, seed: tf.Tensor, pad: int) -> tf.Tensor:
  """Per-image random horizontal flip and pad-`pad`-and-crop with reflect padding.

  Equivalent to `tf.pad(mode='REFLECT')`, a random crop back to size and a random flip, done as
  one gather of source pixel indices, which is several times faster than padding the batch.
  """
  batch = tf.shape(images)[0]
  height, width = images.shape[1], images.shape[2]
  flip_seed, dy_seed, dx_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
  flip = tf.random.stateless_uniform([batch, 1], flip_seed) < 0.5
  dy = tf.random.stateless_uniform([batch, 1], dy_seed, -pad, pad + 1, dtype=tf.int32)
  dx = tf.random.stateless_uniform([batch, 1], dx_seed, -pad, pad + 1, dtype=tf.int32)
  rows = _reflect_index(tf.range(height)[None, :] + dy, height)  # [B, H]
  columns = tf.where(flip, tf.range(width - 1, -1, -1)[None, :], tf.range(width)[None, :])
  columns = _reflect_index(columns + dx, width)  # [B, W]
  pixel_index = tf.reshape(rows[:, :, None] * width + columns[:, None, :], [batch, -1])
  pixels = tf.reshape(images, [batch, height * width, -1])
  out = tf.gather(pixels, pixel_index, axis=1, batch_dims=1)
  return tf.reshape(out, tf.shape(images))


def _rotate_and_zoom(images: tf.Tensor, seed: tf.Tensor, max_degrees: float,
                     max_zoom: float) -> tf.Tensor:
  """Per-image random rotation and zoom about the image center, reflecting at the borders."""
  batch = tf.shape(images)[0]
  height, width = images.shape[1], images.shape[2]
  angle_seed, zoom_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  max_radians = max_degrees * math.pi / 180
  angle = tf.random.stateless_uniform([batch], angle_seed, -max_radians, max_radians)
  zoom = tf.random.stateless_uniform([batch], zoom_seed, 1 - max_zoom, 1 + max_zoom)
  # The transform maps each output pixel to the input point it samples: a rotation by `angle`
  # scaled by 1/zoom about the center (zoom > 1 magnifies).
  cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
  center_x, center_y = (width - 1) / 2, (height - 1) / 2
  zeros = tf.zeros_like(cos)
  transforms = tf.stack([
      cos, -sin, center_x - cos * center_x + sin * center_y,
      sin, cos, center_y - sin * center_x - cos * center_y,
      zeros, zeros
  ], axis=1)  # yapf: disable
  out = keras.ops.image.affine_transform(images,
                                         transforms,
                                         interpolation='bilinear',
                                         fill_mode='reflect',
                                         data_format='channels_last')
  return tf.cast(out, images.dtype)


def _adjust_contrast(images: tf.Tensor, seed: tf.Tensor, low: float, high: float) -> tf.Tensor:
  """Scales each image's deviation from its own mean by a random factor; no clipping."""
  batch = tf.shape(images)[0]
  factor = tf.random.stateless_uniform([batch, 1, 1, 1], seed, low, high, dtype=images.dtype)
  # One mean per image over pixels and channels (as torchvision's contrast uses the grey mean):
  # a reduction along one contiguous axis, twice as fast as per-channel means.
  mean = tf.reshape(tf.reduce_mean(tf.reshape(images, [batch, -1]), axis=1), [batch, 1, 1, 1])
  return images * factor + mean * (1 - factor)


def check_cutout(cutout: int, image_size: Union[int, Sequence[int]]) -> None:
  """Raises ValueError unless `cutout` is 0 (off) or a square side within the image."""
  side = min(_image_hw(image_size))
  if isinstance(cutout, bool) or not isinstance(cutout, int) or not 0 <= cutout <= side:
    raise ValueError(f'--cutout {cutout}: must be 0 (off) or a whole number of pixels up to '
                     f'the stored image side, {side}')


def _is_identity(level: str, cutout: int) -> bool:
  return level == 'none' and not cutout


def _cutout(images: tf.Tensor, seed: tf.Tensor, size: int) -> tf.Tensor:
  """Per-image cutout (DeVries and Taylor, 2017): a `size` x `size` square at a uniformly random
  center, clipped at the borders, set to the image's mean colour."""
  batch = tf.shape(images)[0]
  height, width = images.shape[1], images.shape[2]
  y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  top = tf.random.stateless_uniform([batch, 1, 1], y_seed, 0, height, dtype=tf.int32) - size // 2
  left = tf.random.stateless_uniform([batch, 1, 1], x_seed, 0, width, dtype=tf.int32) - size // 2
  rows, columns = tf.range(height)[None, :, None], tf.range(width)[None, None, :]
  inside = ((rows >= top) & (rows < top + size)) & ((columns >= left) & (columns < left + size))
  mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)  # [B, 1, 1, C]
  return tf.where(inside[..., None], mean, images)


def augment_fn(level: str, image_size: Union[int, Sequence[int]], cutout: int = 0) -> AugmentFn:
  """Returns a batch augmentation `(images, labels, seed=None) -> (images, labels)`.

  Levels: 'none' (identity); 'basic': per-image random horizontal flip and pad-and-crop with
  reflect padding (4 px at 32x32, 1/8 of the side in general); 'strong': basic plus random
  rotation (+-15 degrees), zoom (+-10%) and contrast (x0.8..1.2 around the image mean).
  `cutout` > 0 then sets a random square of that side in each image to its mean colour (`_cutout`).

  The function takes float images [B, H, W, C] in any value range and returns images of the same
  shape and dtype; labels pass through. `seed` is an int [2] tensor for the stateless random ops;
  without one a seed is drawn from TensorFlow's global generator, which follows
  `keras.utils.set_random_seed` when called eagerly or in a sequential `map`. In a parallel
  `map`, use `augment_dataset`, which feeds a seed per batch and stays reproducible.

  Args:
    level: one of `AUGMENTATIONS`.
    image_size: the side of the square images, or (height, width).
    cutout: side in pixels of the square cutout; 0: none.
  """
  check_level(level)
  check_cutout(cutout, image_size)
  height, width = _image_hw(image_size)
  pad = max(1, round(_CROP_PAD_FRACTION * min(height, width)))

  def augment(images, labels, seed=None):
    if _is_identity(level, cutout):
      return images, labels
    images = tf.ensure_shape(images, [None, height, width, None])
    if seed is None:
      seed = tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)
    crop_seed, rotate_seed, contrast_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3))
    if level != 'none':
      images = _flip_and_crop(images, crop_seed, pad)
    if level == 'strong':
      images = _rotate_and_zoom(images, rotate_seed, _MAX_ROTATION_DEGREES, _MAX_ZOOM)
      images = _adjust_contrast(images, contrast_seed, *_CONTRAST_RANGE)
    if cutout:
      # Its own seed, derived so that the levels' draws stay those of the runs before cutout.
      images = _cutout(images, tf.random.experimental.stateless_fold_in(seed, 3), cutout)
    return images, labels

  return augment


def augment_dataset(dataset: tf.data.Dataset, level: str,
                    image_size: Union[int, Sequence[int]], cutout: int = 0) -> tf.data.Dataset:
  """Augments a dataset of (images, labels) batches in a parallel `map` (train split only).

  Each batch gets its own seed from `tf.data.Dataset.random`, which follows the global seed
  (`keras.utils.set_random_seed`) and draws new seeds on every pass over the data, so runs are
  reproducible whatever the thread timing and every epoch still sees new variations.
  """
  augment = augment_fn(level, image_size, cutout)
  if _is_identity(level, cutout):
    return dataset
  seeds = tf.data.Dataset.random(rerandomize_each_iteration=True).batch(2)
  dataset = tf.data.Dataset.zip((dataset, seeds))
  return dataset.map(lambda batch, seed: augment(*batch, seed=seed),
                     num_parallel_calls=tf.data.AUTOTUNE)
