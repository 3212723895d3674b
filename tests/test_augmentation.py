"""Tests of modules/augmentation.py: what each level does to a batch, seeds, the dataset map."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from modules import augmentation


def _distinct_images(batch=64, size=32, low=-1.0, high=1.0):
  rng = np.random.default_rng(0)
  return rng.uniform(low, high, (batch, size, size, 3)).astype('float32')


def _find_shift(output, image, pad=4):
  """(flipped, dy, dx) such that `output` is a crop of the reflect-padded `image`, else None."""
  padded = np.pad(image, [(pad, pad), (pad, pad), (0, 0)], mode='reflect')
  size = image.shape[0]
  for flipped in (False, True):
    source = padded[:, ::-1] if flipped else padded
    for dy in range(2 * pad + 1):
      for dx in range(2 * pad + 1):
        if np.array_equal(source[dy:dy + size, dx:dx + size], output):
          return flipped, dy, dx
  return None


@pytest.mark.parametrize('level', augmentation.AUGMENTATIONS)
def test_augmentation_keeps_shape_dtype_and_labels(level):
  images = tf.constant(_distinct_images(8))
  labels = tf.range(8)
  out, out_labels = augmentation.augment_fn(level, 32)(images, labels)
  assert out.shape == images.shape and out.dtype == images.dtype
  np.testing.assert_array_equal(out_labels, labels)


def test_no_augmentation_is_identity():
  images = tf.constant(_distinct_images(4))
  out, _ = augmentation.augment_fn('none', 32)(images, tf.zeros([4]))
  np.testing.assert_array_equal(out, images)


def test_basic_augmentation_flips_and_shifts_each_image_on_its_own():
  images = _distinct_images(64)
  keras.utils.set_random_seed(3)
  out, _ = augmentation.augment_fn('basic', 32)(tf.constant(images), tf.zeros([64]))
  shifts = [_find_shift(o, i) for o, i in zip(out.numpy(), images)]
  assert all(shift is not None for shift in shifts)  # every output is a crop of its input
  flips = sum(flipped for flipped, _, _ in shifts)
  assert 0 < flips < 64
  assert len({(dy, dx) for _, dy, dx in shifts}) > 10


def test_augmentation_does_not_clip_the_value_range():
  images = _distinct_images(64)
  keras.utils.set_random_seed(0)
  basic, _ = augmentation.augment_fn('basic', 32)(tf.constant(images), tf.zeros([64]))
  assert basic.numpy().min() < -0.99 and basic.numpy().max() > 0.99
  # Halves at -1 and +1: raising the contrast must push values past the input range.
  halves = np.concatenate([-np.ones((64, 32, 16, 3)), np.ones((64, 32, 16, 3))], 2)
  strong, _ = augmentation.augment_fn('strong', 32)(tf.constant(halves, tf.float32), tf.zeros([64]))
  assert strong.numpy().max() > 1.05 and strong.numpy().min() < -1.05


def test_strong_augmentation_differs_per_image():
  same = np.repeat(_distinct_images(1), 16, axis=0)
  out, _ = augmentation.augment_fn('strong', 32)(tf.constant(same), tf.zeros([16]))
  flat = out.numpy().reshape(16, -1)
  assert len({row.tobytes() for row in flat}) == 16


@pytest.mark.parametrize('level', ['basic', 'strong'])
def test_augmentation_is_reproducible_with_a_seed(level):
  images = tf.constant(_distinct_images(16))
  augment = augmentation.augment_fn(level, 32)
  keras.utils.set_random_seed(1)
  first, _ = augment(images, tf.zeros([16]))
  keras.utils.set_random_seed(1)
  second, _ = augment(images, tf.zeros([16]))
  np.testing.assert_array_equal(first, second)


def test_augmented_dataset_is_reproducible_and_varies_by_epoch():
  images = _distinct_images(32)

  def run():
    keras.utils.set_random_seed(1)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(32))).batch(8)
    dataset = augmentation.augment_dataset(dataset, 'strong', 32).repeat(2)
    return np.stack([batch.numpy() for batch, _ in dataset])

  first, second = run(), run()
  np.testing.assert_array_equal(first, second)
  assert not np.array_equal(first[:4], first[4:])  # the second epoch sees new variations


def _square_of(changed):
  """(rows, columns) spanned by the True pixels of a [H, W] mask, which must fill them."""
  rows, columns = np.nonzero(changed.any(1))[0], np.nonzero(changed.any(0))[0]
  assert changed[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1].all()
  assert changed.sum() == len(rows) * len(columns)
  return len(rows), len(columns)


def test_cutout_sets_one_square_of_each_image_to_its_mean_colour():
  images = _distinct_images(64)
  keras.utils.set_random_seed(0)
  out, _ = augmentation.augment_fn('none', 32, cutout=8)(tf.constant(images), tf.zeros([64]))
  out = out.numpy()
  sides = []
  for image, result in zip(images, out):
    changed = (result != image).any(-1)
    sides.append(_square_of(changed))
    np.testing.assert_allclose(result[changed], np.broadcast_to(
        image.mean((0, 1)), result[changed].shape), rtol=1e-5, atol=1e-6)
  assert all(1 <= height <= 8 and 1 <= width <= 8 for height, width in sides)
  assert (8, 8) in sides and len(set(sides)) > 1  # whole squares, and squares cut by a border


def test_cutout_comes_after_the_level_and_leaves_its_draws_alone():
  images = tf.constant(_distinct_images(16))
  keras.utils.set_random_seed(5)
  seed = tf.constant([5, 6])
  basic, _ = augmentation.augment_fn('basic', 32)(images, tf.zeros([16]), seed=seed)
  both, _ = augmentation.augment_fn('basic', 32, cutout=12)(images, tf.zeros([16]), seed=seed)
  for plain, cut in zip(basic.numpy(), both.numpy()):
    changed = (plain != cut).any(-1)
    assert 0 < changed.sum() <= 144
    _square_of(changed)  # the flipped, shifted image with one square cut: nothing else moved


def test_cutout_zero_is_off():
  images = tf.constant(_distinct_images(4))
  out, _ = augmentation.augment_fn('none', 32, cutout=0)(images, tf.zeros([4]))
  np.testing.assert_array_equal(out, images)


def test_augmented_dataset_applies_cutout_without_a_level():
  images = _distinct_images(8)
  dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(8))).batch(4)
  out = np.concatenate([b.numpy() for b, _ in augmentation.augment_dataset(dataset, 'none', 32, 4)])
  changed = (out != images).any(-1)
  assert all(0 < c.sum() <= 16 for c in changed)


@pytest.mark.parametrize('cutout', [-1, 33, 2.5, True])
def test_cutout_outside_the_image_is_refused(cutout):
  with pytest.raises(ValueError, match=f'--cutout {cutout}: must be 0 \\(off\\) or a whole '
                     'number of pixels up to the stored image side, 32'):
    augmentation.augment_fn('basic', 32, cutout=cutout)


def test_unknown_augmentation_level():
  with pytest.raises(ValueError, match='strong'):
    augmentation.augment_fn('extreme', 32)


def test_check_level_names_the_levels():
  for level in ('none', 'basic', 'strong'):
    augmentation.check_level(level)
  with pytest.raises(ValueError, match="Unknown augmentation level 'max'; expected one of: "
                     'none, basic, strong'):
    augmentation.check_level('max')
