"""What a run computes: its identity (the config without the keys that do not change the result), the 12-digit
``config_hash`` of it, the keys a run does not read (``unread_keys``, ``reading_hash``) and how two identities differ.

Runs of the same identity on the same data compute the same thing: the workflow reruns a run when its identity
changes, a run directory refuses a run of another identity, and MLflow runs carry the hash as a tag.
"""

import copy
import hashlib
import json

from srlib.config import flatten

# Keys that say where or how verbosely a run happens, not what it computes: left out of the identity hash.
NON_IDENTITY_KEYS = (
    ("data", "root"), ("data", "workers"),  # the data stream is seeded per sample, whatever the workers
    ("run", "ckpt_every"), ("run", "log_every"), ("run", "val_every"), ("run", "val_images"), ("run", "cost_steps"),
    ("run", "pictures"), ("tracking",),
)


def _weak_keys_unused(cfg: dict) -> bool:
    """True for a fully supervised run without a regularizer: its weak-supervision keys change nothing."""
    return cfg.get("data", {}).get("supervision", "full") == "full" and cfg.get("loss", {}).get("regularizer") is None


# Weak-supervision keys: left out of the identity hash of runs that do not use them (fully supervised, no
# regularizer), so such runs hash as the committed reference runs, which were recorded without these keys.
WEAK_KEYS = (("data", "supervision"), ("data", "pseudo_noise"), ("loss", "regularizer"), ("loss", "rloss"))


# Keys the committed reference runs were recorded without, each with the value that computes what those runs
# computed: left out of the identity hash while they hold it, so such runs keep the reference runs' hash.
LATER_KEYS = {("model", "exit_width"): 256, ("loss", "feature_norm"): "softmax",
              ("loss", "srf_reaches_decoder"): False, ("loss", "srl_reaches_encoder"): False}


def identity(cfg: dict) -> dict:
    """What a run computes: a copy of ``cfg`` without NON_IDENTITY_KEYS, WEAK_KEYS for a run that does not use
    them, and LATER_KEYS that hold the value runs computed with before the key existed. Also takes a partial
    config (a sweep's run-config fragment): keys it lacks are skipped."""
    kept = copy.deepcopy(cfg)
    for section, key in WEAK_KEYS if _weak_keys_unused(cfg) else ():
        kept.get(section, {}).pop(key, None)
    for (section, key), unchanged in LATER_KEYS.items():
        if kept.get(section, {}).get(key, unchanged) == unchanged:
            kept.get(section, {}).pop(key, None)
    for *parents, key in NON_IDENTITY_KEYS:
        node = kept
        for part in parents:
            node = node.get(part, {})
        node.pop(key, None)
    return kept


def config_hash(cfg: dict) -> str:
    """12 hex digits identifying what a run computes (``identity``: paths, logging cadence and tracking
    excluded)."""
    text = json.dumps(identity(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def unread_keys(cfg: dict) -> list[str]:
    """The dotted keys of a full run config that its run does not read: what its loss flags, pixel loss, exit
    type and variant leave unused (a baseline reads no exit, SR or SR-weight key; a +MEA run no SR-F key; ...).

    Two runs whose configs differ only in these keys compute the same thing (``reading_hash``). The rules mirror
    ``srlib.losses.self_regulation`` and ``srlib.train.build_model``; a test trains both sides of each rule.
    """
    loss, model = cfg["loss"], cfg["model"]
    mea, srf, srl = loss["mea"], loss["srf"], loss["srl"]
    soft = loss["variant"] in ("paper", "paper-features")
    read = {
        "model.exit": mea or srf or srl,
        "model.min_exit_stride": mea or srf or srl,
        "model.exit_width": (mea or srf or srl) and model["exit"] == "official",
        "loss.variant": mea or srf or srl,
        "loss.w_seg": mea,
        "loss.w_cls": mea,
        "loss.w_srf": srf,
        "loss.w_srl": srl,
        "loss.tau": soft and (srf or srl),
        "loss.feature_dim": srf and loss["variant"] == "paper-features",
        "loss.feature_norm": srf and loss["variant"] == "paper-features",
        "loss.srf_reaches_decoder": srf,
        "loss.srl_reaches_encoder": srl,
        "optim.sr_warmup_iters": srf or srl,
        "loss.focal": loss["pixel"] == "focal",
        "loss.lal": loss["pixel"] == "lal",
        "loss.center_alpha": loss["center"],
        "loss.w_center": loss["center"],
        "loss.rloss": loss.get("regularizer") is not None,
    }
    return [key for key, used in read.items() if not used]


def reading_hash(cfg: dict) -> str:
    """``config_hash`` of what a full run config's run reads: its ``unread_keys`` dropped, and the variant
    ``paper-features`` read as ``paper`` without SR-F (the two differ in SR-F only). Equal for runs that compute
    the same thing, so a sweep trains such runs once."""
    reading = copy.deepcopy(cfg)
    for dotted in unread_keys(cfg):
        section, key = dotted.split(".")
        reading[section].pop(key, None)
    if reading["loss"].get("variant") == "paper-features" and not cfg["loss"]["srf"]:
        reading["loss"]["variant"] = "paper"
    return config_hash(reading)


def identity_changes(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for each key of the ``identity`` whose value differs between two configs, sorted;
    values as JSON (``1`` and ``1.0`` differ, as in the hash), ``(absent)`` where a config lacks the key."""
    before, after = flatten(identity(old)), flatten(identity(new))

    def shown(flat: dict, key: str) -> str:
        return json.dumps(flat[key]) if key in flat else "(absent)"

    return [f"{key}: {shown(before, key)} -> {shown(after, key)}" for key in sorted(before.keys() | after.keys())
            if shown(before, key) != shown(after, key)]
