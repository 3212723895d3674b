"""Reading sources: the CIFAR-100 archive and folder, image folders, and the split rules."""
import io
import os
import pickle
import struct
import tarfile
import zlib

import numpy as np
import pytest
from PIL import Image

from datasources import sources
from base import constants
from base.errors import UserError
from tests import fixtures

ARCHIVE, FOLDER = constants.SOURCE_CIFAR_ARCHIVE, constants.SOURCE_CIFAR_FOLDER


def test_archive_pixels_labels_and_names(cifar_archive):
  path, expected = cifar_archive
  train = sources.read_cifar_split(ARCHIVE, path, 'train')
  assert train.images.shape == (800, 32, 32, 3) and train.images.dtype == np.uint8
  np.testing.assert_array_equal(train.images, expected['train'])
  np.testing.assert_array_equal(train.fine_labels, expected['train_fine'])
  coarse_names = sources.read_cifar_meta(ARCHIVE, path).coarse_names
  assert [coarse_names[c] for c in train.coarse_labels[:5]] == [
      fixtures.COARSE_NAMES[fixtures.COARSE_OF[fixtures.FINE_NAMES[f]]]
      for f in train.fine_labels[:5]]
  meta = sources.read_cifar_meta(ARCHIVE, path)
  assert meta.fine_names == fixtures.FINE_NAMES and len(meta.coarse_names) == 20


def test_extracted_folder_reads_the_same(cifar_archive, tmp_path):
  path, expected = cifar_archive
  folder = fixtures.extract_archive(path, str(tmp_path))
  test = sources.read_cifar_split(FOLDER, folder, 'test')
  np.testing.assert_array_equal(test.images, expected['test'])


def test_channel_major_layout(tmp_path):
  """Row = 1024 red, 1024 green, 1024 blue values: pixel (0, 1) is data[1], data[1025], data[2049]."""
  path = str(tmp_path / 'c.tar.gz')
  fixtures.write_cifar100_archive(path, 1, 1)
  with tarfile.open(path) as tar:
    raw = pickle.loads(tar.extractfile('cifar-100-python/train').read(), encoding='bytes')
  image = sources.read_cifar_split(ARCHIVE, path, 'train').images[0]
  assert tuple(image[0, 1]) == tuple(raw[b'data'][0][[1, 1025, 2049]])


def test_md5_refused_unless_trusted(cifar_archive):
  path, _ = cifar_archive
  with pytest.raises(UserError, match='is not the official CIFAR-100 archive'):
    sources.check_archive_md5(path, trust_data=False)
  sources.check_archive_md5(path, trust_data=True)


def test_truncated_archive(tmp_path):
  path = str(tmp_path / 'cifar-100-python.tar.gz')
  fixtures.write_cifar100_archive(path, 2, 1, corrupt='truncate')
  with pytest.raises(UserError, match='truncated or corrupt archive'):
    sources.read_cifar_split(ARCHIVE, path, 'test')


def test_not_an_archive(tmp_path):
  path = tmp_path / 'cifar-100-python.tar.gz'
  path.write_bytes(b'not a gzip file at all')
  with pytest.raises(UserError, match='truncated or corrupt archive'):
    sources.read_cifar_meta(ARCHIVE, str(path))


def test_pickle_that_runs_code_is_refused(tmp_path):
  folder = tmp_path / 'cifar-100-python'
  folder.mkdir()

  class Evil:
    def __reduce__(self):
      return (os.system, ('echo pwned',))

  (folder / 'meta').write_bytes(pickle.dumps({b'fine_label_names': Evil()}, protocol=2))
  with pytest.raises(UserError, match='not a readable CIFAR-100 pickle.*not allowed'):
    sources.read_cifar_meta(FOLDER, str(folder))


def test_missing_member(tmp_path):
  folder = tmp_path / 'cifar-100-python'
  folder.mkdir()
  with pytest.raises(UserError, match="no file 'meta'"):
    sources.read_cifar_meta(FOLDER, str(folder))


def test_image_folder_scan_and_load(tmp_path):
  written = fixtures.write_image_folder(str(tmp_path), ['cat', 'dog'], 4, 2, fmt='png')
  (tmp_path / 'train' / 'cat' / 'notes.txt').write_text('not an image')
  scan = sources.scan_image_folder(str(tmp_path))
  assert scan.class_names == ('cat', 'dog') and scan.skipped == 1
  assert len(scan.train_files['dog']) == 4 and len(scan.test_files['cat']) == 2
  assert scan.image_size == (32, 32)
  loaded = sources.load_image(scan.train_files['dog'][1], (32, 32))
  np.testing.assert_array_equal(loaded, written['train']['dog'][1])


def test_image_folder_errors(tmp_path):
  fixtures.write_image_folder(str(tmp_path), ['cat', 'dog'], 3)
  os.makedirs(tmp_path / 'train' / 'empty')
  with pytest.raises(UserError, match="class 'empty' has no images"):
    sources.scan_image_folder(str(tmp_path))
  os.rmdir(tmp_path / 'train' / 'empty')
  Image.new('RGB', (40, 40)).save(tmp_path / 'train' / 'dog' / 'big.png')
  with pytest.raises(UserError, match='images of mixed sizes.*big.png is 40x40'):
    sources.scan_image_folder(str(tmp_path))
  os.remove(tmp_path / 'train' / 'dog' / 'big.png')
  (tmp_path / 'train' / 'dog' / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
  with pytest.raises(UserError, match='broken.jpg: not a readable image'):
    sources.scan_image_folder(str(tmp_path))
  with pytest.raises(UserError, match='no train/ folder'):
    sources.scan_image_folder(str(tmp_path / 'train'))


def test_stratified_holdout_is_per_class_and_deterministic():
  labels = np.repeat([0, 1, 2], [100, 40, 7])
  mask = sources.stratified_holdout(labels, 0.15, seed=5)
  assert [int(mask[labels == c].sum()) for c in range(3)] == [15, 6, 1]
  np.testing.assert_array_equal(mask, sources.stratified_holdout(labels, 0.15, seed=5))
  assert not np.array_equal(mask, sources.stratified_holdout(labels, 0.15, seed=6))


def test_holdout_count_edges():
  assert sources.holdout_count(1, 0.5) == 0  # a lone image stays in training
  assert sources.holdout_count(2, 0.01) == 1
  assert sources.holdout_count(10, 0.99) == 9


def test_tail_holdout_takes_the_last_files():
  files = [f'{i:02d}.png' for i in range(10)]
  keep, held = sources.tail_holdout(files, 0.2)
  assert held == ['08.png', '09.png'] and keep == files[:8]
  with pytest.raises(UserError, match='cannot hold out'):
    sources.tail_holdout(['only.png'], 0.2)


# --- bad images, conversions, bombs and symlinks (issue 12) ---


def png_bytes(width, height, bit_depth, color_type, rows=None, interlace=0, raw=None):
  """A PNG written by hand (not by Pillow): IHDR, one IDAT of `rows` (raw scanlines without
  filter bytes) or of `raw` (filtered bytes as they are; None and None: an empty stream, enough
  for a header-only file), IEND."""
  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data +
            struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
  if raw is None:
    raw = b'' if rows is None else b''.join(b'\x00' + row for row in rows)
  ihdr = struct.pack('>IIBBBBB', width, height, bit_depth, color_type, 0, 0, interlace)
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(raw)) +
          chunk(b'IEND', b''))


def truncated_copy(source, target, keep=0.6):
  data = open(source, 'rb').read()
  with open(target, 'wb') as f:
    f.write(data[:int(len(data) * keep)])


@pytest.mark.parametrize('fmt', ['png', 'jpg'])
def test_truncated_image_data_is_an_error(tmp_path, fmt):
  fixtures.write_image_folder(str(tmp_path), ['cat', 'dog'], 3, fmt=fmt)
  bad = tmp_path / 'train' / 'dog' / f'0001.{fmt}'
  truncated_copy(bad, bad, keep=0.9)
  if fmt == 'jpg':
    with Image.open(bad) as img:
      img.verify()  # the header is fine: the old check (verify only) let this file through
  with pytest.raises(UserError, match=f'0001.{fmt}: not a readable image.*truncated'):
    sources.scan_image_folder(str(tmp_path))
  with pytest.raises(UserError, match='truncated'):
    sources.load_image(str(bad), (32, 32))


def test_short_pixel_data_with_valid_crcs_is_an_error(tmp_path):
  """Every chunk's CRC is right, but IDAT holds 10 of 32 rows: Pillow would fill the rest with
  black. Interlaced images are measured pass by pass."""
  path = tmp_path / 'short.png'
  path.write_bytes(png_bytes(32, 32, 8, 2, [bytes(96)] * 10))
  with pytest.raises(UserError, match=r'short.png: not a readable image \(pixel data ends after '
                     '970 of 3,104 bytes'):
    sources.read_image(str(path))
  path.write_bytes(png_bytes(32, 32, 8, 2, [bytes(96)] * 32))
  assert sources.read_image(str(path))[0].shape == (32, 32, 3)
  # Adam7, 13x7 RGB: the seven passes hold 1x2, 1x2, 1x4, 2x3, 2x7, 4x6, 3x13 pixels, each row
  # with a filter byte: 7 + 7 + 13 + 20 + 44 + 76 + 120 = 287 bytes.
  path.write_bytes(png_bytes(13, 7, 8, 2, interlace=1, raw=bytes(287)))
  assert sources.read_image(str(path))[0].shape == (7, 13, 3)
  path.write_bytes(png_bytes(13, 7, 8, 2, interlace=1, raw=bytes(200)))
  with pytest.raises(UserError, match='short.png: not a readable image'):  # Pillow's own check
    sources.read_image(str(path))


def test_grey_palette_alpha_and_16_bit_are_converted_to_rgb(tmp_path):
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
  grey = rgb[..., 0]
  Image.fromarray(grey).save(tmp_path / 'grey.png')
  np.testing.assert_array_equal(sources.read_image(str(tmp_path / 'grey.png'))[0],
                                np.stack([grey] * 3, axis=-1))
  assert sources.read_image(str(tmp_path / 'grey.png'))[1] == 'grey'

  palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [10, 20, 30]], dtype=np.uint8)
  indices = rng.integers(0, 4, (8, 8), dtype=np.uint8)
  img = Image.fromarray(indices, mode='P')
  img.putpalette(palette.flatten().tolist())
  img.save(tmp_path / 'palette.png')
  pixels, conversion = sources.read_image(str(tmp_path / 'palette.png'))
  np.testing.assert_array_equal(pixels, palette[indices])
  assert conversion == 'palette'

  alpha = np.zeros((8, 8), dtype=np.uint8)
  alpha[:4] = 255  # top half opaque, bottom half transparent
  Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / 'rgba.png')
  pixels, conversion = sources.read_image(str(tmp_path / 'rgba.png'))
  np.testing.assert_array_equal(pixels[:4], rgb[:4])
  assert (pixels[4:] == 255).all() and conversion == 'alpha'  # composited onto white

  # 16-bit grey: v -> v >> 8 (Pillow's own convert('RGB') clips every v > 255 to 255).
  grey16 = rng.integers(0, 65536, (8, 8)).astype(np.uint16)
  (tmp_path / 'grey16.png').write_bytes(
      png_bytes(8, 8, 16, 0, [row.astype('>u2').tobytes() for row in grey16]))
  pixels, conversion = sources.read_image(str(tmp_path / 'grey16.png'))
  np.testing.assert_array_equal(pixels, np.stack([grey16 >> 8] * 3, axis=-1))
  assert conversion == '16-bit grey'

  rgb16 = rng.integers(0, 65536, (8, 8, 3)).astype(np.uint16)
  (tmp_path / 'rgb16.png').write_bytes(
      png_bytes(8, 8, 16, 2, [row.astype('>u2').tobytes() for row in rgb16]))
  pixels, conversion = sources.read_image(str(tmp_path / 'rgb16.png'))
  np.testing.assert_array_equal(pixels, rgb16 >> 8)
  assert conversion == '16-bit'


def test_scan_accepts_upper_case_extensions_and_reports_conversions(tmp_path):
  fixtures.write_image_folder(str(tmp_path), ['cat', 'dog'], 3)
  os.rename(tmp_path / 'train' / 'cat' / '0000.png', tmp_path / 'train' / 'cat' / '0000.PNG')
  Image.new('L', (32, 32), 7).save(tmp_path / 'train' / 'cat' / 'grey.JPEG')
  Image.new('RGBA', (32, 32)).save(tmp_path / 'train' / 'dog' / 'clear.png')
  scan = sources.scan_image_folder(str(tmp_path))
  assert [os.path.basename(f) for f in scan.train_files['cat']] == [
      '0000.PNG', '0001.png', '0002.png', 'grey.JPEG']
  assert {os.path.basename(p): c for p, c in scan.converted.items()} == {
      'grey.JPEG': 'grey', 'clear.png': 'alpha'}


def test_other_formats_named_png_or_jpg_are_refused(tmp_path):
  fixtures.write_image_folder(str(tmp_path), ['cat'], 2)
  Image.new('RGB', (32, 32)).save(tmp_path / 'train' / 'cat' / 'really.png', format='GIF')
  with pytest.raises(UserError, match=r'really.png: not a readable image \(not a PNG or JPEG file'):
    sources.scan_image_folder(str(tmp_path))


def test_hidden_files_and_folders_are_skipped(tmp_path):
  fixtures.write_image_folder(str(tmp_path), ['cat', 'dog'], 2)
  (tmp_path / 'train' / 'cat' / '._0000.png').write_bytes(b'\x00\x05\x16\x07 AppleDouble')
  (tmp_path / 'train' / 'cat' / '.DS_Store').write_bytes(b'\x00')
  os.makedirs(tmp_path / 'train' / '.ipynb_checkpoints')
  scan = sources.scan_image_folder(str(tmp_path))
  assert scan.class_names == ('cat', 'dog') and scan.skipped == 2


def test_symlinks_out_of_the_folder_are_refused(tmp_path):
  root, outside = tmp_path / 'data', tmp_path / 'elsewhere'
  fixtures.write_image_folder(str(root), ['cat', 'dog'], 2)
  fixtures.write_image_folder(str(outside), ['emu'], 2)
  os.symlink(root / 'train' / 'dog' / '0000.png', root / 'train' / 'cat' / 'inside.png')
  assert len(sources.scan_image_folder(str(root)).train_files['cat']) == 3  # inside: fine
  os.symlink(outside / 'train' / 'emu' / '0000.png', root / 'train' / 'cat' / 'out.png')
  with pytest.raises(UserError, match=r'out.png: a symlink to .*elsewhere.*, outside'):
    sources.scan_image_folder(str(root))
  os.remove(root / 'train' / 'cat' / 'out.png')
  os.symlink(outside / 'train' / 'emu', root / 'train' / 'emu')
  with pytest.raises(UserError, match=r'train/emu: a symlink to .*elsewhere'):
    sources.scan_image_folder(str(root))
  os.remove(root / 'train' / 'emu')
  os.symlink(outside / 'train', root / 'test')
  with pytest.raises(UserError, match=r'test: a symlink to .*elsewhere'):
    sources.scan_image_folder(str(root))


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path):
  """A 30,000 x 30,000 PNG header (900 M pixels, ten times Pillow's limit) in a 60-byte file."""
  fixtures.write_image_folder(str(tmp_path), ['cat'], 2)
  bomb = tmp_path / 'train' / 'cat' / 'bomb.png'
  bomb.write_bytes(png_bytes(30000, 30000, 1, 0))
  with pytest.raises(UserError, match='bomb.png: refused as a decompression bomb'):
    sources.scan_image_folder(str(tmp_path))
  with pytest.raises(UserError, match='refused as a decompression bomb'):
    sources.load_image(str(bomb), (32, 32))


@pytest.mark.parametrize('side', [40, 64])  # 1,600 px: Pillow warns; 4,096 px: Pillow refuses
def test_pillow_limit_is_the_limit(tmp_path, monkeypatch, side):
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1500)
  fixtures.write_image_folder(str(tmp_path), ['cat'], 2, size=side)
  with pytest.raises(UserError, match='0000.png: refused as a decompression bomb'):
    sources.scan_image_folder(str(tmp_path))
  with pytest.raises(UserError, match='refused as a decompression bomb'):
    sources.load_image(str(tmp_path / 'train' / 'cat' / '0001.png'), (side, side))
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', side * side)
  assert sources.scan_image_folder(str(tmp_path)).image_size == (side, side)


def test_many_images_are_checked_by_worker_processes(tmp_path, monkeypatch):
  """The process pool path finds the same conversions and the same first bad image."""
  monkeypatch.setattr(sources, '_PROCESS_MIN_IMAGES', 4)
  monkeypatch.setattr(sources, '_CHECK_CHUNK', 3)
  fixtures.write_image_folder(str(tmp_path), ['cat', 'dog'], 6)
  Image.new('L', (32, 32)).save(tmp_path / 'train' / 'dog' / '0003.png')
  scan = sources.scan_image_folder(str(tmp_path), workers=2)
  assert [os.path.basename(p) for p in scan.converted] == ['0003.png']
  truncated_copy(tmp_path / 'train' / 'dog' / '0004.png', tmp_path / 'train' / 'dog' / '0004.png')
  with pytest.raises(UserError, match='dog/0004.png: not a readable image'):
    sources.scan_image_folder(str(tmp_path), workers=2)


# --- malformed CIFAR-100 pickles ---


def write_cifar_folder(root, meta=None, train=None, test=None):
  """cifar-100-python/{meta,train,test} pickled with protocol 2; None: a valid small member."""
  splits = fixtures.cifar100_splits(1, 1)
  members = {
      'meta': meta or {b'fine_label_names': [n.encode() for n in fixtures.FINE_NAMES],
                       b'coarse_label_names': [n.encode() for n in fixtures.COARSE_NAMES]},
      'train': train or splits['train'][0], 'test': test or splits['test'][0]}
  folder = os.path.join(root, 'cifar-100-python')
  os.makedirs(folder, exist_ok=True)
  for name, obj in members.items():
    with open(os.path.join(folder, name), 'wb') as f:
      f.write(obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=2))
  return folder


def _train(**changes):
  batch = dict(fixtures.cifar100_splits(1, 1)['train'][0])
  for key, value in changes.items():
    if value is None:
      del batch[key.encode()]
    else:
      batch[key.encode()] = value
  return batch


@pytest.mark.parametrize('changes,message', [
    (dict(data=np.zeros((100, 3000), np.uint8)), r'expected data N x 3072.*\(100, 3000\)'),
    (dict(data=np.zeros((100, 32, 32, 3), np.uint8)), 'expected data N x 3072'),
    (dict(fine_labels=list(range(99))), '99 fine'),
    (dict(coarse_labels=None), "has no 'coarse_labels'"),
    (dict(data=None), "has no 'data'"),
    (dict(data=np.full((100, 3072), 0.5)), "'data' holds float64 values, not integers"),
    (dict(data=np.full((100, 3072), 300)), 'pixel values outside 0..255'),
    (dict(fine_labels=[[1, 2], [3]]), "'fine_labels' is not an array"),
    (dict(fine_labels=list(range(99)) + [100]), 'fine label 100 is outside 0..99'),
    (dict(coarse_labels=[-1] * 100), 'coarse label -1 is outside 0..19'),
])
def test_malformed_split_pickles(tmp_path, changes, message):
  folder = write_cifar_folder(str(tmp_path), train=_train(**changes))
  with pytest.raises(UserError, match=message):
    sources.read_cifar(FOLDER, folder)


@pytest.mark.parametrize('meta,message', [
    ({b'fine_label_names': [b'a'] * 100, b'coarse_label_names': [b'b']}, 'repeats a name'),
    ({b'fine_label_names': 7, b'coarse_label_names': [b'b']}, 'is not a list of names'),
    ({b'coarse_label_names': [b'b']}, "has no 'fine_label_names'"),
    ([1, 2, 3], 'expected a dict, found list'),
    (b'\x80\x02not a pickle', 'not a readable CIFAR-100 pickle'),
])
def test_malformed_meta_pickles(tmp_path, meta, message):
  folder = write_cifar_folder(str(tmp_path), meta=meta)
  with pytest.raises(UserError, match=message):
    sources.read_cifar(FOLDER, folder)


@pytest.mark.parametrize('payload', [
    # builtins.eval('...') and os.system('...'), written as raw pickle opcodes.
    b"\x80\x02cbuiltins\neval\nX\x08\x00\x00\x00print(1)\x85R.",
    b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00true\x85R.",
    # _codecs.encode is allowed for latin1 bytes only, not with another codec.
    b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x06\x00\x00\x00base64\x86R.",
])
def test_pickles_that_call_anything_else_are_refused(tmp_path, payload):
  folder = write_cifar_folder(str(tmp_path), meta=payload)
  with pytest.raises(UserError, match='not a readable CIFAR-100 pickle.*not allowed'):
    sources.read_cifar_meta(FOLDER, folder)


def test_only_the_restricted_unpickler_reads_pickles():
  """No project code outside datasources/sources.py unpickles anything (tests may, on data they
  wrote): every CIFAR-100 pickle goes through _SafeUnpickler."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  risky = ('pickle.load', 'pickle.Unpickler', 'allow_pickle=True', 'cifar100.load_data',
           'dill.load', 'joblib.load')
  found = []
  for folder in ('base', 'datasources', 'components', 'modules', 'pipeline', 'benchmarks'):
    for dirpath, _, names in os.walk(os.path.join(root, folder)):
      for name in names:
        path = os.path.join(dirpath, name)
        if name.endswith('.py') and path != os.path.abspath(sources.__file__):
          text = open(path, encoding='utf-8').read()
          found += [f'{path}: {r}' for r in risky if r in text]
  for name in ('local_runner.py', 'kubeflow_runner.py'):
    text = open(os.path.join(root, name), encoding='utf-8').read()
    found += [f'{name}: {r}' for r in risky if r in text]
  assert found == []
  source = open(sources.__file__, encoding='utf-8').read()
  assert source.count('pickle.load') == 0 and source.count('.load()') == 1  # the safe one
