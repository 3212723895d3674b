"""Bad input found by the preflight, through the real command line (issue 12).

Every case: exit 2, one line `error: ...` naming the file or folder and the problem, and nothing
written under --output-dir that a later run could take for a result. docs/reliability.md lists
these cases and what the user sees.
"""
import io
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from tests import fixtures
from tests.test_sources import png_bytes, truncated_copy, write_cifar_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_runner(*args):
  return subprocess.run([sys.executable, os.path.join(ROOT, 'local_runner.py'), *args],
                        capture_output=True, text=True, cwd=ROOT, timeout=120)


def assert_refused(result, message, output_dir):
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  assert message in lines[0], lines[0]
  # The run's log may be there; no artifact and no ML Metadata a later run could trust.
  for name in ('pipeline_root', 'metadata.sqlite', 'serving_model'):
    assert not os.path.exists(os.path.join(output_dir, name)), name


def image_folder(root, classes=('cat', 'dog'), train=3, test=0, fmt='png'):
  fixtures.write_image_folder(str(root), list(classes), train, test, fmt=fmt)
  return root


class _Evil:
  """Pickles as a call to os.system: it would create `marker` if anything unpickled it freely."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


def _truncated(root, fmt):
  image_folder(root, fmt=fmt)
  path = root / 'train' / 'dog' / f'0002.{fmt}'
  truncated_copy(path, path, keep=0.9)


def _non_square(root):
  for name in ('cat', 'dog'):
    os.makedirs(root / 'train' / name)
    for n in range(2):
      Image.new('RGB', (48, 32)).save(root / 'train' / name / f'{n}.png')


def _gif_named_png(root):
  image_folder(root)
  Image.new('RGB', (32, 32)).save(root / 'train' / 'cat' / 'anim.png', format='GIF')


def _no_test_images(root):
  image_folder(root, test=1)
  for name in os.listdir(root / 'test' / 'dog'):
    os.remove(root / 'test' / 'dog' / name)
  os.rmdir(root / 'test' / 'dog')


def _only_in_test(root):
  image_folder(root, test=1)
  os.makedirs(root / 'test' / 'yak')
  Image.new('RGB', (32, 32)).save(root / 'test' / 'yak' / '0.png')


def _symlink_out(root):
  image_folder(root)
  secret = root.parent / 'private.png'
  Image.new('RGB', (32, 32)).save(secret)
  os.symlink(secret, root / 'train' / 'cat' / 'link.png')


def _bomb(root, side):
  image_folder(root)
  (root / 'train' / 'cat' / 'bomb.png').write_bytes(png_bytes(side, side, 1, 0))


def _cifar(root, **members):
  return write_cifar_folder(str(root), **members)


def _train_batch(**changes):
  batch = dict(fixtures.cifar100_splits(1, 1)['train'][0])
  batch.update({k.encode(): v for k, v in changes.items()})
  return batch


def _inconsistent_superclass(root):
  train = dict(fixtures.cifar100_splits(2, 1)['train'][0])  # two apples: one moves superclass
  coarse = list(train[b'coarse_labels'])
  coarse[list(train[b'fine_labels']).index(0)] += 1
  _cifar(root, train={**train, b'coarse_labels': coarse})


def _evil_archive(root):
  os.makedirs(root)
  with tarfile.open(root / 'cifar-100-python.tar.gz', 'w:gz') as tar:
    payload = pickle.dumps({b'fine_label_names': _Evil(root.parent / 'PWNED')}, protocol=2)
    info = tarfile.TarInfo('cifar-100-python/meta')
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


# (name, how to make the input under `root`, extra flags, --data relative to `root`, message)
CASES = [
    ('truncated_png', lambda r: _truncated(r, 'png'), [], '', '0002.png: not a readable image'),
    ('truncated_jpg', lambda r: _truncated(r, 'jpg'), [], '', '0002.jpg: not a readable image'),
    ('png_short_pixel_data', lambda r: (image_folder(r), (r / 'train' / 'cat' / 'short.png')
                                        .write_bytes(png_bytes(32, 32, 8, 2, [bytes(96)] * 8))),
     [], '', 'short.png: not a readable image (pixel data ends after'),
    ('non_square', _non_square, [], '', 'images are 48x32; the pipeline needs square images'),
    ('gif_named_png', _gif_named_png, [], '', 'anim.png: not a readable image (not a PNG or JPEG file)'),
    ('no_test_images', _no_test_images, [], '', "no test images for classes ['dog']"),
    ('only_in_test', _only_in_test, [], '', "classes ['yak'] are not in train/"),
    ('symlink_out', _symlink_out, [], '', 'link.png: a symlink to'),
    ('bomb_refused_by_pillow', lambda r: _bomb(r, 30000), [], '',
     'bomb.png: refused as a decompression bomb'),
    ('bomb_pillow_only_warns', lambda r: _bomb(r, 10000), [], '',  # 1.1x Pillow's limit
     'bomb.png: refused as a decompression bomb'),
    ('cifar_rows_not_3072', lambda r: _cifar(r, train=_train_batch(
        data=np.zeros((100, 1024), np.uint8))), [], 'cifar-100-python',
     'train: expected data N x 3072 and N labels, found (100, 1024)'),
    ('cifar_missing_key', lambda r: _cifar(r, test={b'data': np.zeros((1, 3072), np.uint8)}), [],
     'cifar-100-python', "test has no 'fine_labels'"),
    ('cifar_inconsistent_superclass', _inconsistent_superclass,
     ['--classes', 'apple,bee'], 'cifar-100-python',
     "class 'apple': inconsistent superclass labels"),
    ('cifar_label_out_of_range', lambda r: _cifar(r, train=_train_batch(
        fine_labels=[100] * 100)), [], 'cifar-100-python', 'fine label 100 is outside 0..99'),
    ('cifar_pickle_runs_code', lambda r: _cifar(r, meta={
        b'fine_label_names': _Evil(r.parent / 'PWNED')}), [], 'cifar-100-python',
     'posix.system is not allowed in a CIFAR-100 pickle'),
    ('cifar_archive_pickle_runs_code', _evil_archive, ['--trust-data'],
     'cifar-100-python.tar.gz', 'posix.system is not allowed in a CIFAR-100 pickle'),
]


@pytest.mark.parametrize('name,make,flags,data,message', CASES, ids=[c[0] for c in CASES])
def test_refused_before_any_component_runs(tmp_path, name, make, flags, data, message):
  del name  # the test id
  root = tmp_path / 'input'
  make(root)
  output_dir = str(tmp_path / 'out')
  result = run_runner('--data', str(root / data), '--output-dir', output_dir, *flags)
  assert_refused(result, message, output_dir)
  assert not (tmp_path / 'PWNED').exists()  # no pickle ran code



# --- the predict CLI reads images as ExampleGen does ---


def test_predict_converts_like_example_gen(tmp_path):
  from pipeline import predict  # pylint: disable=g-import-not-at-top
  from datasources import encoding, sources  # pylint: disable=g-import-not-at-top
  grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
  Image.fromarray(grey).save(tmp_path / 'grey.png')
  png = predict.load_as_png(str(tmp_path / 'grey.png'), 8)
  decoded = np.asarray(Image.open(io.BytesIO(png)))
  np.testing.assert_array_equal(decoded, np.stack([grey] * 3, axis=-1))
  example_gen_pixels = sources.load_image(str(tmp_path / 'grey.png'), (8, 8))
  assert png == encoding.encode_pngs(example_gen_pixels[None])[0]


def test_predict_refuses_bombs_and_broken_files_one_line_each(tmp_path):
  """Every file is refused before the model is loaded: one line per file, exit 1."""
  model_dir = tmp_path / 'model'
  os.makedirs(model_dir / 'assets.extra')
  (model_dir / 'saved_model.pb').write_bytes(b'')  # never loaded: no image gets that far
  (model_dir / 'assets.extra' / 'classes.json').write_text(
      '{"class_names": ["cat", "dog"], "stored_image_size": 32}')
  (tmp_path / 'bomb.png').write_bytes(png_bytes(30000, 30000, 1, 0))
  (tmp_path / 'warned.png').write_bytes(png_bytes(10000, 10000, 1, 0))  # 1.1x Pillow's limit
  noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
  Image.fromarray(noise).save(tmp_path / 'cut.jpg')
  truncated_copy(tmp_path / 'cut.jpg', tmp_path / 'cut.jpg', keep=0.9)
  Image.new('RGB', (64, 64)).save(tmp_path / 'gif.png', format='GIF')
  names = ['bomb.png', 'warned.png', 'cut.jpg', 'gif.png']
  result = subprocess.run(
      [sys.executable, '-m', 'pipeline.predict', *[str(tmp_path / n) for n in names],
       '--model-dir', str(model_dir)], capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert result.returncode == 1, result.stderr
  # (Importing apache_beam, through datasources.encoding, prints google.api_core's warnings.)
  lines = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(lines) == 4, result.stderr
  assert 'bomb.png: refused as a decompression bomb' in lines[0]
  assert 'warned.png: refused as a decompression bomb' in lines[1]
  assert 'cut.jpg: not a readable image (image file is truncated' in lines[2]  # header intact
  assert 'gif.png: not a readable image (not a PNG or JPEG file)' in lines[3]
