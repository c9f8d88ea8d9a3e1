"""Which exit teaches which: a multi-exit segmentor's Self-Regulation wiring, as data.

A wiring holds indices into the model output's per-exit lists ``out["seg"]``, ``out["cls"]`` and ``out["feats"]``
(index 0 = exit 1, the last index = the head, the test-time output)::

    {"srf_teacher": int, "srf_students": [int, ...], "srl_teacher": int, "srl_students": [int, ...]}

SR-F distils the teacher's segmentation logits (or projected features) into each student's; SR-L distils the
teacher's image-level class logits into each student's. ``srlib.losses.self_regulation`` reads
``out["wiring"]`` and falls back to :func:`plain_wiring` when the output has none. Pure Python (no torch).

| model | exits, in ``out["seg"]`` order | SR-F | SR-L |
|---|---|---|---|
| plain (fcn, deeplabv2/v3, ocr) | stages 1..N-1, head N | exit 1 -> exits 2..N | head -> exits 1..N-1 |
| U-shape (unet, fpn) | encoder E1..Ee, decoder blocks D1..Dd (deepest first), head | E1 -> E2..Ee | head -> D1..Dd |

The U-shape rows follow the paper's Figure 3: the encoder's shallowest block teaches the deeper encoder blocks
(SR-F), the decoder's final block teaches the shallower decoder blocks (SR-L). The paper does not say whether
SR-F also reaches the decoder or SR-L the encoder: by default neither does; ``srf_reaches_decoder`` adds the
decoder blocks and the head to SR-F's students, ``srl_reaches_encoder`` adds the encoder exits to SR-L's.
"""

WIRING_KEYS = ("srf_teacher", "srf_students", "srl_teacher", "srl_students")


def plain_wiring(n_exits: int) -> dict:
    """Exits 1..N-1 on backbone stages, the head last: SR-F exit 1 -> exits 2..N, SR-L exit N -> exits 1..N-1."""
    return {"srf_teacher": 0, "srf_students": list(range(1, n_exits)),
            "srl_teacher": n_exits - 1, "srl_students": list(range(n_exits - 1))}


def ushape_wiring(n_encoder: int, n_decoder: int, *, srf_reaches_decoder: bool = False,
                  srl_reaches_encoder: bool = False) -> dict:
    """``n_encoder`` encoder exits (shallowest first), ``n_decoder`` decoder-block exits (deepest first), the head
    last: SR-F encoder exit 1 -> the other encoder exits (and the decoder exits and the head with
    ``srf_reaches_decoder``); SR-L head -> the decoder exits (and the encoder exits with ``srl_reaches_encoder``)."""
    encoder = list(range(n_encoder))
    decoder = list(range(n_encoder, n_encoder + n_decoder))
    head = n_encoder + n_decoder
    return {"srf_teacher": 0, "srf_students": encoder[1:] + (decoder + [head] if srf_reaches_decoder else []),
            "srl_teacher": head, "srl_students": (encoder if srl_reaches_encoder else []) + decoder}


def check_wiring(wiring: dict, n_exits: int, *, srf: bool, srl: bool) -> None:
    """Raise ValueError naming the key and value when ``wiring`` does not fit ``n_exits`` exits or leaves an
    active term (``srf``, ``srl``) without students."""
    missing = [key for key in WIRING_KEYS if key not in wiring]
    if missing:
        raise ValueError(f"out['wiring'] lacks {missing}; it needs {list(WIRING_KEYS)}")
    for term, active in (("srf", srf), ("srl", srl)):
        teacher, students = wiring[f"{term}_teacher"], wiring[f"{term}_students"]
        for key, index in [(f"{term}_teacher", teacher)] + [(f"{term}_students", s) for s in students]:
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_exits:
                raise ValueError(f"out['wiring'][{key!r}] = {wiring[key]!r}: need exit indices 0..{n_exits - 1}")
        if teacher in students or len(set(students)) != len(students):
            raise ValueError(f"out['wiring'][{term + '_students'!r}] = {students!r}: each exit once, "
                             f"never the teacher {teacher}")
        if active and not students:
            raise ValueError(f"out['wiring'][{term + '_students'!r}] is empty: {term.upper().replace('SR', 'SR-')} "
                             f"has no student among {n_exits} exits")
