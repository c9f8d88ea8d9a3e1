"""Scribble labels (``data.supervision: scribble``): the ScribbleSup annotation format read and rasterised,
and scribbles drawn for the generated dataset.

ScribbleSup format (Lin et al., CVPR 2016; PASCAL VOC 2012 and PASCAL-Context): one XML file per image::

    <annotation>
      <filename>2007_000032.jpg</filename>
      <size><width>500</width><height>281</height></size>
      <polygon>
        <tag>aeroplane</tag>
        <point><X>104</X><Y>78</Y></point>
        <point><X>120</X><Y>80</Y></point>
        ...
      </polygon>
      ...
    </annotation>

Each ``<polygon>`` is one scribble: an open polyline through its points (pixel coordinates, x right, y down)
labelled by its ``<tag>``. Rasterised as the reference tooling does: lines 3 pixels wide, in file order,
every unlabelled pixel 255. Tags are class names, compared in lower case with spaces removed ("potted
plant" = "pottedplant"); "background" is class 0. ``convert_scribbles`` writes one PNG per XML file in the
dataset's ground-truth encoding, ready for ``data.label_dir`` (VOC: 0..20; PASCAL-Context: raw 0 =
background, which its 59-class benchmark ignores, 1..59 = its classes).

Generated dataset: ``generated_scribbles`` draws one stroke along each object's centreline (the midpoints of
its cross-sections along its principal axis, clipped to the object) and a few background strokes away from
the objects, 3 px wide, about 3 % of the pixels at 128 px; deterministic per image id.
"""

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from srlib.config import IGNORE_INDEX, SCRIBBLE_DATASETS
from srlib.data import dataset_module
from srlib.data.pseudo import label_rng, objects

LINE_WIDTH = 3  # pixels, as the reference tooling draws scribbles
_SALT = 0x5C21B


def _tag_key(tag: str) -> str:
    return "".join(tag.lower().split())


def tag_values(dataset: str) -> dict[str, int]:
    """Scribble tag -> raw mask value of ``dataset`` ('voc_aug': class ids, 'background' = 0;
    'pascal_context': 'background' = raw 0, class k = raw k + 1)."""
    if dataset not in SCRIBBLE_DATASETS:
        raise ValueError(f"no scribble tags for dataset {dataset!r}; valid: {', '.join(SCRIBBLE_DATASETS)}")
    classes = dataset_module(dataset).CLASSES
    offset = 0 if classes[0] == "background" else 1
    return {"background": 0, **{_tag_key(name): i + offset for i, name in enumerate(classes)}}


def _number(node, tag: str, path) -> int:
    text = node.findtext(tag)
    try:
        return round(float(text))
    except (TypeError, ValueError):
        raise ValueError(f"{path}: <{tag}> must hold a number, got {text!r}") from None


def read_scribbles(path) -> dict:
    """One ScribbleSup XML file -> {"height", "width", "scribbles": [(tag, int array N x 2 of (x, y))]}.

    ValueError naming the file for a missing ``<size>``, a scribble without tag or points, or a bad number.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise ValueError(f"{path}: not valid XML ({error})") from None
    size = root.find("size")
    if size is None:
        raise ValueError(f"{path}: no <size> element")
    scribbles = []
    for i, polygon in enumerate(root.iter("polygon")):
        tag = (polygon.findtext("tag") or "").strip()
        points = [(_number(p, "X", path), _number(p, "Y", path)) for p in polygon.iter("point")]
        if not tag or not points:
            raise ValueError(f"{path}: <polygon> {i} needs a <tag> and at least one <point>")
        scribbles.append((tag, np.array(points, dtype=np.int64)))
    height, width = _number(size, "height", path), _number(size, "width", path)
    if height < 1 or width < 1:
        raise ValueError(f"{path}: <size> must be at least 1 x 1 px, got width {width}, height {height}")
    return {"height": height, "width": width, "scribbles": scribbles}


def rasterize(height: int, width: int, strokes, line_width: int = LINE_WIDTH) -> np.ndarray:
    """uint8 height x width label map: each (value, points N x 2 of (x, y)) drawn as a polyline ``line_width``
    px wide, in order (later strokes on top); every other pixel 255. A one-point stroke is a square dot."""
    canvas = Image.new("L", (width, height), IGNORE_INDEX)
    draw = ImageDraw.Draw(canvas)
    half = (line_width - 1) / 2
    for value, points in strokes:
        xy = [tuple(p) for p in np.asarray(points).tolist()]
        if len(xy) == 1:
            (x, y), = xy
            draw.rectangle([x - half, y - half, x + half, y + half], fill=int(value))
        else:
            draw.line(xy, fill=int(value), width=line_width)
    return np.asarray(canvas)


def _strokes(path, dataset: str) -> tuple[int, int, list]:
    """(height, width, [(value, points)]) of one XML file in ``dataset``'s raw encoding; ValueError naming the
    file for anything ``read_scribbles`` refuses and for an unknown tag."""
    parsed, values = read_scribbles(path), tag_values(dataset)
    strokes = []
    for tag, points in parsed["scribbles"]:
        if _tag_key(tag) not in values:
            raise ValueError(f"{path}: unknown scribble tag {tag!r} for {dataset}; valid: {', '.join(values)}")
        strokes.append((values[_tag_key(tag)], points))
    return parsed["height"], parsed["width"], strokes


def convert_scribbles(xml_dir, dataset: str, out_dir) -> int:
    """Every ``xml_dir/<id>.xml`` -> ``out_dir/<id>.png`` (L mode, the dataset's raw encoding); returns the
    count. The output folder is then a ``data.label_dir`` for ``data.supervision: scribble``. Every file is
    read and checked before any mask is written, so a bad file leaves no partial output."""
    files = sorted(Path(xml_dir).glob("*.xml"))
    if not files:
        raise FileNotFoundError(f"no scribble XML files in {xml_dir}")
    parsed = [(path, _strokes(path, dataset)) for path in files]  # points only: small
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for path, strokes in parsed:
        Image.fromarray(rasterize(*strokes), mode="L").save(out / f"{path.stem}.png")
    return len(files)


# ---------------------------------------------------------------- generated scribbles
def _centreline(region: np.ndarray, keep: float) -> np.ndarray:
    """Points (x, y) N x 2 along ``region``'s principal axis: the midpoint of each 1 px cross-section, over the
    middle ``keep`` share of the object's length."""
    ys, xs = np.nonzero(region)
    coords = np.stack([xs, ys], 1).astype(float)
    centre = coords.mean(0)
    if len(coords) < 3:
        return np.round(centre[None]).astype(np.int64)
    _, _, axes = np.linalg.svd(coords - centre, full_matrices=False)
    along = (coords - centre) @ axes[0]
    bins = np.floor(along - along.min()).astype(int)
    lo, hi = np.quantile(bins, [(1 - keep) / 2, (1 + keep) / 2])
    points = [coords[bins == b].mean(0) for b in np.unique(bins) if lo <= b <= hi]
    return np.round(np.array(points)).astype(np.int64)


def generated_scribbles(mask: np.ndarray, name: str, background_strokes: int = 3) -> np.ndarray:
    """Scribbles (int64 H x W, class ids, 255 unlabelled) for the generated image ``name`` from its ground
    truth ``mask``: one centreline stroke per object, clipped to it, and ``background_strokes`` straight
    strokes (each a quarter of the image long) on background at least 3 px from any object."""
    rng = label_rng(name, _SALT)
    height, width = mask.shape
    out = np.full(mask.shape, IGNORE_INDEX, np.int64)
    free = ndimage.distance_transform_edt(mask == 0) >= 3
    ys, xs = np.nonzero(free)
    for _ in range(background_strokes if len(ys) else 0):
        i = rng.integers(len(ys))
        angle, length = rng.uniform(0, np.pi), 0.25 * width
        step = 0.5 * length * np.array([np.cos(angle), np.sin(angle)])
        ends = np.round([[xs[i] - step[0], ys[i] - step[1]], [xs[i] + step[0], ys[i] + step[1]]]).astype(np.int64)
        line = rasterize(height, width, [(0, ends)]) == 0
        out[line & free] = 0
    for class_id, region in objects(mask):
        line = rasterize(height, width, [(1, _centreline(region, keep=0.8))]) == 1
        out[line & region] = class_id
    return out
