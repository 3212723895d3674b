"""Test data in the exact real formats: a CIFAR-100 python archive, and image folders.

The archive holds `cifar-100-python/{train,test,meta,file.txt~}` pickled with protocol 2 and bytes
keys, as the official file (pickled by Python 2) loads: `data` N x 3072 uint8, channel-major;
`fine_labels`, `coarse_labels`, `filenames`, `batch_label`; `meta` has `fine_label_names` and
`coarse_label_names`. The superclass of each class is the real one.
"""
import io
import os
import pickle
import tarfile
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

# The real CIFAR-100 superclasses and their classes (meta's names are these, sorted).
SUPERCLASSES = {
    'aquatic_mammals': ['beaver', 'dolphin', 'otter', 'seal', 'whale'],
    'fish': ['aquarium_fish', 'flatfish', 'ray', 'shark', 'trout'],
    'flowers': ['orchid', 'poppy', 'rose', 'sunflower', 'tulip'],
    'food_containers': ['bottle', 'bowl', 'can', 'cup', 'plate'],
    'fruit_and_vegetables': ['apple', 'mushroom', 'orange', 'pear', 'sweet_pepper'],
    'household_electrical_devices': ['clock', 'keyboard', 'lamp', 'telephone', 'television'],
    'household_furniture': ['bed', 'chair', 'couch', 'table', 'wardrobe'],
    'insects': ['bee', 'beetle', 'butterfly', 'caterpillar', 'cockroach'],
    'large_carnivores': ['bear', 'leopard', 'lion', 'tiger', 'wolf'],
    'large_man-made_outdoor_things': ['bridge', 'castle', 'house', 'road', 'skyscraper'],
    'large_natural_outdoor_scenes': ['cloud', 'forest', 'mountain', 'plain', 'sea'],
    'large_omnivores_and_herbivores': ['camel', 'cattle', 'chimpanzee', 'elephant', 'kangaroo'],
    'medium_mammals': ['fox', 'porcupine', 'possum', 'raccoon', 'skunk'],
    'non-insect_invertebrates': ['crab', 'lobster', 'snail', 'spider', 'worm'],
    'people': ['baby', 'boy', 'girl', 'man', 'woman'],
    'reptiles': ['crocodile', 'dinosaur', 'lizard', 'snake', 'turtle'],
    'small_mammals': ['hamster', 'mouse', 'rabbit', 'shrew', 'squirrel'],
    'trees': ['maple_tree', 'oak_tree', 'palm_tree', 'pine_tree', 'willow_tree'],
    'vehicles_1': ['bicycle', 'bus', 'motorcycle', 'pickup_truck', 'train'],
    'vehicles_2': ['lawn_mower', 'rocket', 'streetcar', 'tank', 'tractor'],
}
FINE_NAMES = tuple(sorted(n for names in SUPERCLASSES.values() for n in names))
COARSE_NAMES = tuple(sorted(SUPERCLASSES))
COARSE_OF = {n: COARSE_NAMES.index(c) for c, names in SUPERCLASSES.items() for n in names}


def class_images(fine_ids: np.ndarray, seed: int) -> np.ndarray:
  """[N, 32, 32, 3] uint8 images whose colour and stripes depend on the class: learnable."""
  rng = np.random.default_rng(seed)
  n = len(fine_ids)
  base = np.stack([(fine_ids * 37) % 256, (fine_ids * 91) % 256, (fine_ids * 53) % 256], axis=-1)
  rows = np.arange(32)[None, :, None]
  stripes = ((rows + fine_ids[:, None, None]) % (2 + fine_ids[:, None, None] % 5) == 0) * 60
  images = base[:, None, None, :] + stripes[..., None] + rng.normal(0, 20, (n, 32, 32, 3))
  return np.clip(images, 0, 255).astype(np.uint8)


def _batch(fine_ids: np.ndarray, seed: int, label: str) -> Tuple[Dict[bytes, object], np.ndarray]:
  images = class_images(fine_ids, seed)
  data = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # channel-major rows
  batch = {
      b'batch_label': label.encode(),
      b'fine_labels': [int(i) for i in fine_ids],
      b'coarse_labels': [COARSE_OF[FINE_NAMES[i]] for i in fine_ids],
      b'filenames': [f'img_{label}_{n}.png'.encode() for n in range(len(fine_ids))],
      b'data': data,
  }
  return batch, images


def cifar100_splits(train_per_class: int, test_per_class: int,
                    seed: int = 0) -> Dict[str, Tuple[Dict[bytes, object], np.ndarray]]:
  """The pickled dicts and their HWC images: classes interleaved, as in the real files."""
  rng = np.random.default_rng(seed)
  out = {}
  for member, per_class, salt in (('train', train_per_class, 1), ('test', test_per_class, 2)):
    ids = np.repeat(np.arange(100), per_class)
    rng.shuffle(ids)
    out[member] = _batch(ids, seed * 10 + salt, f'{member} batch 1 of 1')
  return out


def write_cifar100_archive(path: str, train_per_class: int = 5, test_per_class: int = 2,
                           seed: int = 0, corrupt: Optional[str] = None) -> Dict[str, np.ndarray]:
  """Writes cifar-100-python.tar.gz at `path`; returns {'train'/'test': images, ... labels}.

  corrupt='truncate' cuts the file in half after writing it.
  """
  splits = cifar100_splits(train_per_class, test_per_class, seed)
  meta = {
      b'fine_label_names': [n.encode() for n in FINE_NAMES],
      b'coarse_label_names': [n.encode() for n in COARSE_NAMES],
  }
  members = {'meta': meta, 'file.txt~': None, **{k: v[0] for k, v in splits.items()}}
  with tarfile.open(path, 'w:gz') as tar:
    for name, obj in members.items():
      payload = b'' if obj is None else pickle.dumps(obj, protocol=2)
      info = tarfile.TarInfo(f'cifar-100-python/{name}')
      info.size = len(payload)
      tar.addfile(info, io.BytesIO(payload))
  if corrupt == 'truncate':
    with open(path, 'rb') as f:
      content = f.read()
    with open(path, 'wb') as f:
      f.write(content[:len(content) // 2])
  result = {}
  for member, (batch, images) in splits.items():
    result[member] = images
    result[member + '_fine'] = np.asarray(batch[b'fine_labels'])
  return result


def extract_archive(archive: str, target_dir: str) -> str:
  """Extracts like the user would; returns the cifar-100-python/ folder."""
  with tarfile.open(archive, 'r:gz') as tar:
    tar.extractall(target_dir, filter='data')  # what Python 3.14 does by default
  return os.path.join(target_dir, 'cifar-100-python')


def write_image_folder(root: str, classes: Sequence[str], train_per_class: int,
                       test_per_class: int = 0, size: int = 32, fmt: str = 'png',
                       seed: int = 0) -> Dict[str, Dict[str, np.ndarray]]:
  """PATH/train/<class>/NNNN.<fmt> (and test/ when test_per_class > 0); returns the pixels."""
  written = {}
  for split, per_class in (('train', train_per_class), ('test', test_per_class)):
    if per_class == 0:
      continue
    written[split] = {}
    for c, name in enumerate(classes):
      images = class_images(np.full(per_class, c * 7), seed + c + (1000 if split == 'test' else 0))
      if size != 32:
        images = np.stack([np.asarray(Image.fromarray(i).resize((size, size))) for i in images])
      folder = os.path.join(root, split, name)
      os.makedirs(folder, exist_ok=True)
      for n, image in enumerate(images):
        Image.fromarray(image).save(os.path.join(folder, f'{n:04d}.{fmt}'))
      written[split][name] = images
  return written


# ExampleGen's raw features as SchemaGen infers them ([1] per example).
def raw_feature_spec():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from base import constants  # pylint: disable=g-import-not-at-top
  return {constants.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
          constants.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64),
          constants.LABEL_NAME_KEY: tf.io.FixedLenFeature([1], tf.string)}


def raw_example(png: bytes, label: int, label_name: bytes = b'x') -> bytes:
  """One serialized tf.Example as ExampleGen writes it: the PNG, the label and its name."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from base import constants  # pylint: disable=g-import-not-at-top
  return tf.train.Example(features=tf.train.Features(feature={
      constants.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
      constants.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
      constants.LABEL_NAME_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[label_name])),
  })).SerializeToString()


def write_transform_graph(path: str, stored_image_size: int = 32):
  """Transform's output as TFX's in-place Transform writes it (materialize=False, no statistics,
  no analyzer): the raw metadata and the graph of preprocessing_fn, traced without reading data.
  Returns its `tft.TFTransformOutput`."""
  import functools  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from tensorflow_transform import impl_helper  # pylint: disable=g-import-not-at-top
  from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io  # pylint: disable=g-import-not-at-top
  from base import constants  # pylint: disable=g-import-not-at-top
  from modules import transform  # pylint: disable=g-import-not-at-top
  spec = raw_feature_spec()
  metadata_io.write_metadata(dataset_metadata.DatasetMetadata.from_feature_spec(spec),
                             os.path.join(path, tft.TFTransformOutput.RAW_METADATA_DIR))
  type_specs = {key: tf.TensorSpec([None, *s.shape], s.dtype) for key, s in spec.items()}
  impl_helper.analyze_in_place(
      functools.partial(transform.preprocessing_fn,
                        custom_config={constants.STORED_IMAGE_SIZE: stored_image_size}),
      False, spec, type_specs, path)
  return tft.TFTransformOutput(path)


def correlated_images(n: int = 64, size: int = 12, seed: int = 1) -> np.ndarray:
  """float64 images [n, size, size, 3] whose pixels and channels are strongly correlated: a
  smooth shared pattern plus a little noise of each pixel (for the whitening layer's tests)."""
  rng = np.random.default_rng(seed)
  shared = rng.normal(size=(n, size, size, 1)).cumsum(axis=1).cumsum(axis=2) / size
  return shared * [1.0, 0.8, -0.5] + 0.3 * rng.normal(size=(n, size, size, 3))


def patches_2x2(images: np.ndarray) -> np.ndarray:
  """Every 2x2 patch of images [N, H, W, C], one per row in (row, column, channel) order."""
  windows = np.lib.stride_tricks.sliding_window_view(images, (2, 2), axis=(1, 2))
  return windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 4 * images.shape[-1])


def whitened_variances(images: np.ndarray, epsilon: float = 5e-4) -> np.ndarray:
  """What a whitening of the images' 2x2 patches leaves as variances, from numpy's eigenvalues L
  of their covariance (ascending): L / (L + epsilon)."""
  eigenvalues = np.linalg.eigvalsh(np.cov(patches_2x2(images), rowvar=False))
  return eigenvalues / (eigenvalues + epsilon)
