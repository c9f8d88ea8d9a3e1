"""Training / evaluation transforms keep image, mask and parts aligned; sliding-window inference averages tiles."""

import pickle

import numpy as np
import pytest
import torch

from srlib.data.transforms import MEAN, STD, denormalize, eval_transform, train_transform
from srlib.inference import predict_logits

# Well separated colours: class k is drawn in COLOURS[k]; ignore (255) in magenta.
COLOURS = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]])
LABELS = np.array([0, 1, 2, 3, 4, 5, 255])


def blocky(seed: int, blocks=(5, 7), block: int = 8):
    """Image whose 8 x 8 blocks are coloured by their mask value, and parts = (mask == 3)."""
    rng = np.random.default_rng(seed)
    mask = np.kron(rng.choice(LABELS, size=blocks), np.ones((block, block), dtype=np.int64))
    image = COLOURS[np.searchsorted(LABELS, mask)].astype(np.uint8)
    return image, mask, mask == 3


def decode(image: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Class of the nearest colour at every pixel of a normalised image, and where that colour is (nearly) pure.

    A pixel within 10 of a colour in every channel is >= 88 % that colour's input pixels (the colours differ by
    255 in some channel), so the input pixel nearest to it, which nearest-neighbour resizing gives the mask,
    must carry that colour's class. Blends (block edges under bilinear resizing) are not pure.
    """
    rgb = denormalize(image).astype(np.int64)
    deviation = np.abs(rgb[:, :, None, :] - COLOURS[None, None]).max(-1)
    return LABELS[deviation.argmin(-1)], deviation.min(-1) <= 10


def test_random_transforms_keep_image_mask_and_parts_aligned():
    transform = train_transform((32, 48), scale_range=(0.5, 2.0), flip=True)
    checked = padded = 0
    for seed in range(40):
        image, mask, parts = blocky(seed)
        torch.manual_seed(seed)
        out_image, out_mask, out_parts = transform(image, mask, parts)
        assert out_image.shape == (3, 32, 48) and out_image.dtype == torch.float32
        assert out_mask.dtype == torch.int64 and out_parts.dtype == torch.bool
        labels = out_mask.numpy()
        # Parts follow the mask exactly (same nearest sampling; padding is ignore / False).
        np.testing.assert_array_equal(out_parts.numpy(), labels == 3)
        # The colour encodes the class: wherever it is pure (not a bilinear blend at a block edge) they agree.
        decoded, pure = decode(out_image)
        np.testing.assert_array_equal(decoded[pure], labels[pure])
        checked += pure.sum()
        padded += bool((out_image == 0).all(0).any())  # only padding is exactly the mean colour
    assert checked > 40 * 32 * 48 * 0.6 and padded > 0


def test_padding_uses_ignore_and_the_mean_colour():
    image, mask, parts = np.full((16, 12, 3), 200, np.uint8), np.ones((16, 12), np.int64), np.ones((16, 12), bool)
    torch.manual_seed(0)
    out_image, out_mask, out_parts = train_transform((24, 20), scale_range=(1, 1), flip=False)(image, mask, parts)
    assert (out_mask == 1).sum() == 16 * 12 and out_parts.sum() == 16 * 12
    pad = out_mask == 255
    assert pad.sum() == 24 * 20 - 16 * 12 and not out_parts[pad].any()
    assert torch.equal(out_image[:, pad], torch.zeros(3, int(pad.sum())))  # normalised mean colour = 0
    assert torch.all(out_image[:, ~pad] == out_image[:, :1, 0])  # padding is bottom / right


def test_flip_is_consistent_and_both_ways_occur():
    image, mask, parts = blocky(1)
    transform = train_transform(mask.shape, scale_range=(1, 1), flip=True)
    outcomes = set()
    for seed in range(12):
        torch.manual_seed(seed)
        out_image, out_mask, out_parts = transform(image, mask, parts)
        flipped = torch.equal(out_mask, torch.from_numpy(mask[:, ::-1].copy()))
        assert flipped or torch.equal(out_mask, torch.from_numpy(mask))
        decoded, pure = decode(out_image)
        assert pure.all() and np.array_equal(decoded, out_mask.numpy())  # no resampling: exact
        np.testing.assert_array_equal(out_parts.numpy(), out_mask.numpy() == 3)
        outcomes.add(flipped)
    assert outcomes == {True, False}


def test_same_seed_same_sample_and_transform_pickles():
    image, mask, parts = blocky(2)
    transform = pickle.loads(pickle.dumps(train_transform(24)))  # DataLoader workers may pickle it
    torch.manual_seed(5)
    first = transform(image, mask, None)
    torch.manual_seed(5)
    second = transform(image, mask, None)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1]) and second[2] is None


def test_eval_transform_normalises_at_full_resolution():
    image, mask, parts = blocky(3)
    out_image, out_mask, out_parts = eval_transform()(image, mask, parts)
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    expected = (torch.from_numpy(image).permute(2, 0, 1) / 255 - mean) / std
    torch.testing.assert_close(out_image, expected)
    np.testing.assert_array_equal(denormalize(out_image), image)
    assert torch.equal(out_mask, torch.from_numpy(mask)) and torch.equal(out_parts, torch.from_numpy(parts))
    assert eval_transform()(image, mask, None)[2] is None


def test_bad_transform_arguments():
    with pytest.raises(ValueError, match="crop_size"):
        train_transform(0)
    with pytest.raises(ValueError, match="scale_range"):
        train_transform(32, scale_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="one size"):
        eval_transform()(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.int64), None)


def conv_model(kernel: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Conv2d(3, 4, kernel, padding=kernel // 2).eval()


def test_window_covering_the_image_is_a_plain_forward():
    model, images = conv_model(3), torch.randn(2, 3, 12, 20)
    torch.testing.assert_close(predict_logits(model, images, window=32), model(images), rtol=0, atol=0)
    torch.testing.assert_close(predict_logits(model, images), model(images), rtol=0, atol=0)


def test_overlapping_windows_average_their_logits():
    model, images = conv_model(3), torch.randn(1, 3, 10, 10)
    out = predict_logits(model, images, window=6, stride=4)  # tiles start at 0 and 4 on each side
    tile = {(t, l): model(images[..., t:t + 6, l:l + 6]) for t in (0, 4) for l in (0, 4)}
    torch.testing.assert_close(out[..., 0, 0], tile[0, 0][..., 0, 0])  # one tile
    torch.testing.assert_close(out[..., 0, 5], (tile[0, 0][..., 0, 5] + tile[0, 4][..., 0, 1]) / 2)  # two
    four = sum(tile[t, l][..., 5 - t, 5 - l] for t in (0, 4) for l in (0, 4)) / 4  # the central overlap
    torch.testing.assert_close(out[..., 5, 5], four)
    # A pointwise model gives the same logits however the image is tiled (uneven strides, thin images too).
    pointwise, images = conv_model(1), torch.randn(2, 3, 23, 9)
    torch.testing.assert_close(predict_logits(pointwise, images, window=8, stride=5), pointwise(images))


def test_bad_window_arguments():
    model, images = conv_model(3), torch.randn(1, 3, 10, 10)
    with pytest.raises(ValueError, match="stride"):
        predict_logits(model, images, window=4, stride=5)
    with pytest.raises(ValueError, match="full-resolution"):
        predict_logits(torch.nn.Conv2d(3, 2, 2, stride=2), images, window=6)
