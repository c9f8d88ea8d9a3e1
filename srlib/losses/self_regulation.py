"""Self-Regulation losses (Zhang et al., ICCV 2021): baseline CE, MEA, SR-F and SR-L.

``self_regulation_loss`` turns a ``Segmentor.forward`` output dict into the loss terms of one
cell of the ``(mea, srf, srl)`` grid, in one of three variants (the README's "Method variants" table
compares them):

- ``official``: as the authors' demo code (SR-SS ``trainval.py``) computes it.
  SR-F = pixel CE of each student's seg logits against the argmax of exit 1's seg logits (a hard
  pseudo-label, every pixel counted, ignore pixels included). SR-L = BCE between each student's
  sigmoid class probabilities and exit N's sigmoid probabilities (soft targets).
  Presence labels count void pixels as background (the demo maps 255 to 0 before building them).
- ``paper``: as the paper's text writes it. SR-F and SR-L are the temperature-scaled soft
  cross-entropy ``tau^2 * sum_c softmax(t/tau)_c * -log softmax(s/tau)_c`` (channel softmax per
  pixel for SR-F, averaged over valid pixels; over the class logits for SR-L, averaged over the
  batch). Ignore pixels are excluded everywhere, presence labels included.
- ``paper-features``: as ``paper``, except that SR-F compares the projected feature maps
  ``out["feats"]`` (our assumption; the paper does not say how channels were aligned): teacher
  f_1, students f_2..f_N upsampled bilinearly to f_1's resolution, ignore pixels taken from the
  label downsampled (nearest) to that resolution. ``feature_norm`` says how a position's feature
  vector becomes a distribution over channels: ``softmax`` (``softmax(f / tau)``, as for logits) or
  ``power``, the paper's text: ``relu(f)^(1/tau)`` normalised to sum 1 (the projection's output
  through a ReLU, as the backbone's post-ReLU features the paper normalises; ``FEATURE_EPS`` added
  before the power so that an all-zero vector is uniform and its log finite). Both are the soft
  cross-entropy above applied to ``log(relu(f) + eps)`` or to ``f``: the power normalisation of
  ``f`` is the softmax of ``log(relu(f) + eps) / tau``.

Decisions shared by every variant:

- Every seg logit map is upsampled bilinearly (``align_corners=False``) once to the label size and
  that one tensor serves every term that reads it.
- Terms are sums over exits / students, as the demo's ``get_seg_loss`` / ``get_class_loss`` sum:
  ``total = w_seg*seg + w_cls*cls + w_srf*srf + w_srl*srl`` (official 0.8 / 0.2 / 1.0 / 1.0, the defaults
  in ``srlib.config.DEFAULTS["loss"]``).
- Without MEA, ``seg`` is the pixel loss of the head z_N only, weighted 1.0: the plain baseline.
  With MEA, ``seg`` sums the pixel loss over all exits (weight w_seg) and ``cls`` sums
  BCE-with-logits of every c_k against the presence labels (weight w_cls; mean over batch x
  classes, as ``nn.BCELoss``).
- The ground-truth pixel loss ignores ``ignore_index`` in every variant, so the baseline is the
  same number whatever the variant.
- Binary cross-entropies take logits (``binary_cross_entropy_with_logits``): the same value as
  the demo's ``nn.BCELoss`` on sigmoid outputs, without its clamp at log 0 = -100.
- Distillation terms (SR-F, SR-L) always use plain (soft) cross-entropy; ``pixel_loss`` (focal,
  LAL, ...) replaces only the ground-truth segmentation loss.
- A teacher is detached inside the term it teaches: it receives no gradient from that term.
- Every term is computed in float32, whatever dtype the model returns (bf16 / fp16 autocast), and with autocast
  off, so a caller may compute the loss inside its autocast region.
- Without MEA nothing supervises exits 1..N-1 or the class logits, so SR-F then distils from an
  untrained exit 1 and SR-L from an untrained c_N. The grid still runs those cells, as asked.

Each distillation term also reports its gap (``srf_gap``, ``srl_gap``; for logging, not in the total):
the term minus the teacher's entropy summed over the students, i.e. the KL divergence part that a student
can still reduce (a soft cross-entropy never falls below the teacher's entropy). Official SR-F's teacher is
one-hot, so its gap is the term itself; official SR-L's entropy is the binary one of each class probability.
A term that sits at a large constant may be at its floor: its gap near 0 says so.

Which exit teaches which is data, ``out["wiring"]`` (``srlib.wiring``): SR-F's teacher and students, SR-L's
teacher and students, as indices into ``out["seg"]`` / ``out["cls"]`` / ``out["feats"]``. Without it the plain
wiring above applies (SR-F exit 1 -> exits 2..N, SR-L exit N -> exits 1..N-1); U-shape models supply theirs
(SR-F within the encoder, SR-L from the final decoder block to the other decoder blocks; ``srlib.wiring``'s table).
The head is always the last exit: MEA supervises every exit, the baseline only the last.

``model_needs`` says which model parts the active terms read. Validation: ``check_loss_args``
(settings), ``check_labels`` (a label tensor, before training) and ``check_outputs`` (that ``out``
holds what ``model_needs`` asks for) raise ``ValueError``
naming the offending value. ``self_regulation_loss`` runs the first and last on every call;
scanning labels costs a device sync, so callers run ``check_labels`` on their data up front.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from srlib.config import DEFAULTS, FEATURE_NORMS, IGNORE_INDEX, VARIANTS
from srlib.losses.pixel_ops import class_argmax, nll_terms, resize_bilinear
from srlib.wiring import check_wiring, plain_wiring

FEATURE_EPS = 1e-3  # power normalisation: added to relu(f) before the power (features are O(1) after BN-ReLU)
_W = {key: DEFAULTS["loss"][key] for key in ("w_seg", "w_cls", "w_srf", "w_srl", "tau")}  # the official values

PixelLoss = Callable[[Tensor, Tensor], Tensor]


def check_loss_args(
    *,
    variant: str,
    num_classes: int,
    tau: float = _W["tau"],
    w_seg: float = _W["w_seg"],
    w_cls: float = _W["w_cls"],
    w_srf: float = _W["w_srf"],
    w_srl: float = _W["w_srl"],
    ignore_index: int = IGNORE_INDEX,
) -> None:
    """Raise ValueError naming the first bad setting; return None when all are valid."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown self-regulation variant {variant!r}; valid: {', '.join(VARIANTS)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"temperature tau must be a finite number > 0, got {tau!r}")
    weights = {"w_seg": w_seg, "w_cls": w_cls, "w_srf": w_srf, "w_srl": w_srl}
    for name, weight in weights.items():
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
            raise ValueError(f"loss weight {name} must be a finite number >= 0, got {weight!r}")
    if 0 <= ignore_index < num_classes:
        raise ValueError(f"ignore_index {ignore_index} is a class id (num_classes={num_classes})")


def check_labels(target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
    """Raise ValueError listing every label value outside ``0..num_classes-1`` that is not ignore.

    Cheap when the labels are valid (one comparison pass); only a bad tensor is scanned for its values.
    """
    target = torch.as_tensor(target)
    if not bool((((target < 0) | (target >= num_classes)) & (target != ignore_index)).any()):
        return
    values = target.unique()
    bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_index)]
    if bad.numel():
        shown = ", ".join(str(v) for v in bad[:10].tolist()) + (", ..." if bad.numel() > 10 else "")
        raise ValueError(
            f"label values {shown} are not class ids 0..{num_classes - 1} "
            f"nor the ignore index {ignore_index}"
        )


def model_needs(*, mea: bool, srf: bool, srl: bool, variant: str) -> dict[str, bool]:
    """The Segmentor parts the active terms read: {"exits": exits 1..N-1 (MEA, SR-F, SR-L), "classify":
    class logits on every exit (MEA, SR-L), "feature_proj": projected stage features (SR-F, paper-features)}."""
    return {"exits": mea or srf or srl, "classify": mea or srl, "feature_proj": srf and variant == "paper-features"}


def check_outputs(out: dict, *, mea: bool, srf: bool, srl: bool, variant: str, num_classes: int) -> None:
    """Raise ValueError when ``out`` (Segmentor.forward's dict) lacks what ``model_needs`` asks for."""
    seg, cls, feats = out.get("seg") or [], out.get("cls") or [], out.get("feats") or []
    if not seg:
        raise ValueError("out['seg'] is empty: the model returned no segmentation logits")
    bad = [tuple(z.shape) for z in seg if z.dim() != 4 or z.shape[1] != num_classes]
    if bad:
        raise ValueError(f"out['seg'] tensors must be B x {num_classes} x h x w, got shapes {bad}")
    needs = model_needs(mea=mea, srf=srf, srl=srl, variant=variant)
    if needs["exits"] and len(seg) < 2:
        term = "MEA" if mea else "SR-F" if srf else "SR-L"
        raise ValueError(f"{term} needs at least 2 exits, out['seg'] has {len(seg)}: build the model with an exit_type")
    if needs["classify"] and len(cls) != len(seg):
        raise ValueError(
            f"{'MEA' if mea else 'SR-L'} needs class logits on every exit: out['cls'] has {len(cls)} "
            f"tensors for {len(seg)} exits (build the model with classify=True)"
        )
    if needs["feature_proj"] and len(feats) != len(seg):
        raise ValueError(
            f"variant 'paper-features' needs projected features on every exit: out['feats'] has "
            f"{len(feats)} tensors for {len(seg)} exits (build the model with feature_proj_dim)"
        )
    if needs["feature_proj"] and len({f.shape[1] for f in feats}) > 1:
        raise ValueError(f"out['feats'] must share one width, got {[f.shape[1] for f in feats]} channels")
    if srf or srl:
        check_wiring(wiring_of(out), len(seg), srf=srf, srl=srl)


def wiring_of(out: dict) -> dict:
    """``out["wiring"]`` (``srlib.wiring``), or the plain wiring of ``out["seg"]``'s exits when it has none."""
    return out.get("wiring") or plain_wiring(len(out["seg"]))


def presence_labels(
    target: Tensor, num_classes: int, *, void_as_background: bool, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """Float B x C: 1 where class c occurs in image b's mask (target B x H x W).

    ``void_as_background`` counts ignore pixels as class 0 (official); otherwise they are skipped.
    """
    flat = target.flatten(1)
    void = flat == ignore_index
    flat = flat.masked_fill(void, 0 if void_as_background else num_classes)  # extra bin = dropped
    presence = torch.zeros(flat.shape[0], num_classes + 1, device=target.device)
    return presence.scatter_(1, flat, 1.0)[:, :num_classes]


def soft_cross_entropy(student: Tensor, teacher: Tensor, tau: float) -> Tensor:
    """``tau^2 * sum_c softmax(teacher/tau)_c * -log_softmax(student/tau)_c`` over dim 1.

    Shapes B x C (x h x w); returns B (x h x w) in float32. The teacher is detached.
    """
    target = F.softmax(teacher.detach().float() / tau, dim=1)
    return tau**2 * -(target * F.log_softmax(student.float() / tau, dim=1)).sum(dim=1)


def soft_entropy(teacher: Tensor, tau: float) -> Tensor:
    """``tau^2 * H(softmax(teacher/tau))`` over dim 1: the floor of ``soft_cross_entropy`` against ``teacher``.
    Shape B x C (x h x w) -> B (x h x w), float32, no gradient."""
    with torch.no_grad():
        log_p = F.log_softmax(teacher.float() / tau, dim=1)
        return tau**2 * -(log_p.exp() * log_p).sum(dim=1)


def power_logits(feats: Tensor) -> Tensor:
    """``log(relu(f) + FEATURE_EPS)``: logits whose ``softmax(. / tau)`` is the power normalisation of ``f``,
    ``(relu(f) + eps)^(1/tau) / sum_c (relu(f_c) + eps)^(1/tau)``. B x D x h x w -> same, float32."""
    return torch.log(F.relu(feats.float()) + FEATURE_EPS)


def _valid_mean(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``values`` over ``valid`` positions (same shape); 0 when none is valid."""
    return (values * valid).sum() / valid.sum().clamp_min(1)


def _srf_features(teacher: Tensor, students: list[Tensor], target: Tensor, tau: float, ignore_index: int,
                  feature_norm: str) -> tuple[Tensor, Tensor]:
    """paper-features SR-F: soft CE of the students' features (f_2..f_N) against the teacher's (f_1) at the
    teacher's resolution over valid pixels, each map normalised by ``feature_norm``; returns (term, the teacher's
    mean entropy over valid pixels)."""
    size = teacher.shape[-2:]
    label = F.interpolate(target[:, None].float(), size=size, mode="nearest")[:, 0]
    valid = label != ignore_index
    if feature_norm == "power":
        teacher, students = power_logits(teacher), [power_logits(f) for f in students]
    term = sum(_valid_mean(soft_cross_entropy(resize_bilinear(f, size), teacher, tau), valid) for f in students)
    return term, _valid_mean(soft_entropy(teacher, tau), valid)


def _binary_entropy(logits: Tensor) -> Tensor:
    """Mean binary entropy of ``sigmoid(logits)`` (B x C), no gradient: official SR-L's floor per student."""
    with torch.no_grad():
        return F.binary_cross_entropy_with_logits(logits, torch.sigmoid(logits))


def self_regulation_loss(
    out: dict, target: Tensor, *, mea: bool, srf: bool, srl: bool, variant: str, num_classes: int,
    w_seg: float = _W["w_seg"], w_cls: float = _W["w_cls"], w_srf: float = _W["w_srf"], w_srl: float = _W["w_srl"],
    tau: float = _W["tau"], feature_norm: str = "softmax", ignore_index: int = IGNORE_INDEX,
    pixel_loss: PixelLoss | None = None, has_background: bool = True,
) -> dict[str, Tensor]:
    """Loss terms of one (mea, srf, srl) cell; see the module docstring for every definition.

    out: Segmentor.forward's dict ("seg": N tensors B x C x h_k x w_k, exit 1 first, head last;
    "cls": N tensors B x C; "feats": N tensors B x D x h_k x w_k; optional "wiring", see ``srlib.wiring``).
    target: LongTensor B x H x W.
    pixel_loss(logits B x C x H x W, target) -> scalar; default CE ignoring ``ignore_index``.
    has_background: class 0 is a background class. ``official`` counts void pixels as background in the
    presence labels only then; on datasets without one (Cityscapes: class 0 = road) void is skipped.
    feature_norm: ``paper-features`` only, ``FEATURE_NORMS``: softmax or the paper's power normalisation.
    Returns the unweighted active terms among "seg", "cls", "srf", "srl" (scalars), their weighted "total",
    and, for logging only (not in the total): "seg_head", the head's own pixel loss (with MEA "seg" sums it
    over every exit), and "srf_gap" / "srl_gap" with their terms (each term minus its teacher's entropy over
    the students: the KL part).
    """
    check_loss_args(
        variant=variant, num_classes=num_classes, tau=tau, ignore_index=ignore_index,
        w_seg=w_seg, w_cls=w_cls, w_srf=w_srf, w_srl=w_srl,
    )
    if feature_norm not in FEATURE_NORMS:
        raise ValueError(f"unknown feature_norm {feature_norm!r}; valid: {', '.join(FEATURE_NORMS)}")
    check_outputs(out, mea=mea, srf=srf, srl=srl, variant=variant, num_classes=num_classes)
    # Autocast off: a caller's bf16 / fp16 region would otherwise run the upsampling's matrix products in low
    # precision; every term is float32 wherever the loss is called.
    with torch.autocast(out["seg"][-1].device.type, enabled=False):
        seg, cls = out["seg"], [c.float() for c in out.get("cls") or []]
        wiring = wiring_of(out)
        needs_all = mea or (srf and variant != "paper-features")
        logits = [resize_bilinear(z.float(), target.shape[-2:]) for z in (seg if needs_all else seg[-1:])]  # once
        # Official SR-F's pseudo-label: every pixel counts (no ignore value among class ids).
        pseudo = class_argmax(logits[wiring["srf_teacher"]].detach()) if srf and variant == "official" else None
        gt, distilled = _pixel_losses(logits, target, pseudo, set(wiring["srf_students"]), mea=mea,
                                      ignore_index=ignore_index, pixel_loss=pixel_loss)
        terms = {}
        if mea:
            presence = presence_labels(
                target, num_classes, void_as_background=variant == "official" and has_background,
                ignore_index=ignore_index,
            )
            terms["seg"] = sum(gt.values())  # every exit, in order
            terms["cls"] = sum(F.binary_cross_entropy_with_logits(c, presence) for c in cls)
        else:
            terms["seg"] = gt[len(logits) - 1]
        floors = {}  # term -> the teacher's entropy, per student (the gap's floor)
        if srf:
            terms["srf"], floors["srf"] = _srf_term(variant, logits, out.get("feats"), distilled, wiring, target, tau,
                                                    ignore_index, feature_norm)
        if srl:
            terms["srl"], floors["srl"] = _srl_term(variant, cls, wiring, tau)
        weights = {"seg": w_seg if mea else 1.0, "cls": w_cls, "srf": w_srf, "srl": w_srl}
        return _totalled(terms, floors, gt[len(logits) - 1], wiring, weights)


def _totalled(terms: dict, floors: dict, head: Tensor, wiring: dict, weights: dict) -> dict[str, Tensor]:
    """``terms`` (name -> scalar) with their ``weights``-weighted "total", then "seg_head" (``head``, the head's own
    pixel loss: comparable across runs with and without MEA) and each distillation term's gap (the term minus
    ``floors``' teacher entropy times its number of students)."""
    terms["total"] = sum(weights[name] * term for name, term in terms.items())
    terms["seg_head"] = head
    students = {"srf": len(wiring["srf_students"]), "srl": len(wiring["srl_students"])}
    for name, floor in floors.items():
        terms[f"{name}_gap"] = terms[name].detach() - students[name] * floor.to(terms[name].device)
    return terms


def _pixel_losses(logits: list[Tensor], target: Tensor, pseudo: Tensor | None, srf_students: set[int], *, mea: bool,
                  ignore_index: int, pixel_loss: PixelLoss | None) -> tuple[dict, dict]:
    """(exit -> its ground-truth pixel loss, exit -> its official SR-F cross-entropy), scalars: the loss of every
    exit under MEA, else of the head (the last); the cross-entropy against ``pseudo`` (official SR-F's B x H x W
    pseudo-label, None otherwise) of each SR-F student. ``logits``: one B x C x H x W float32 map per exit, at the
    label size. With the default CE, one log-softmax of an exit serves its ground-truth CE and its SR-F CE."""
    n_valid = (target != ignore_index).sum().clamp_min(1)  # 0 loss, not NaN, when every pixel is ignore
    supervised = range(len(logits)) if mea else range(len(logits) - 1, len(logits))
    gt, distilled = {}, {}
    for i in range(len(logits)):
        targets = [(target, ignore_index, n_valid)] if i in supervised and pixel_loss is None else []
        targets += [(pseudo, -100, pseudo.numel())] if pseudo is not None and i in srf_students else []
        values = nll_terms(logits[i], targets) if targets else []
        if i in supervised:
            gt[i] = values.pop(0) if pixel_loss is None else pixel_loss(logits[i], target)
        if pseudo is not None and i in srf_students:
            distilled[i] = values.pop(0)
    return gt, distilled


def _srf_term(variant: str, logits: list[Tensor], feats: list[Tensor] | None, distilled: dict, wiring: dict,
              target: Tensor, tau: float, ignore_index: int, feature_norm: str) -> tuple[Tensor, Tensor]:
    """SR-F's unweighted term and its teacher's entropy per student (scalars): official, the students' summed
    cross-entropies against the pseudo-label (``distilled``; a one-hot teacher, entropy 0); paper, soft CE of the
    students' upsampled logits against the teacher's over valid pixels; paper-features, of their projected
    features (``feats``)."""
    if variant == "official":
        return sum(distilled.values()), torch.zeros(())
    if variant == "paper":
        valid = target != ignore_index
        teacher = logits[wiring["srf_teacher"]]
        term = sum(_valid_mean(soft_cross_entropy(logits[i], teacher, tau), valid) for i in wiring["srf_students"])
        return term, _valid_mean(soft_entropy(teacher, tau), valid)
    return _srf_features(feats[wiring["srf_teacher"]], [feats[i] for i in wiring["srf_students"]], target, tau,
                         ignore_index, feature_norm)


def _srl_term(variant: str, cls: list[Tensor], wiring: dict, tau: float) -> tuple[Tensor, Tensor]:
    """SR-L's unweighted term over the students' class logits (``cls``: B x C float32 per exit) and its teacher's
    entropy per student (scalars): official, BCE against the teacher's sigmoid probabilities; paper, soft CE at
    temperature ``tau``, averaged over the batch."""
    teacher = cls[wiring["srl_teacher"]]
    if variant == "official":
        soft = torch.sigmoid(teacher.detach())
        return (sum(F.binary_cross_entropy_with_logits(cls[i], soft) for i in wiring["srl_students"]),
                _binary_entropy(teacher))
    return (sum(soft_cross_entropy(cls[i], teacher, tau).mean() for i in wiring["srl_students"]),
            soft_entropy(teacher, tau).mean())
