"""What the exits cost, by exit type and placement: training-model MACs and parameters against the baseline.

Counts on the meta device (no weights allocated, nothing trained), for the default benchmark's model and the
paper's DeepLab-v2 ResNet-101 at 321 x 321. ``min_exit_stride`` 2 is the authors' placement (the stride-2
stem is exit 1); 4 skips the stem, so the difference between the two rows is the stride-2 exit's own cost.

    python benchmarks/exit_cost.py
"""

import torch

from srlib.cost import count_flops, count_parameters
from srlib.models import EXITS, build_preset

SETTINGS = (  # (preset, input side in px, classes, build overrides)
    ("fcn_mobilenetv2_100", 128, 10, {"output_stride": 16}),  # benchmarks/default.yaml
    ("deeplabv2_resnet101", 321, 21, {}),                      # the paper's
)


def main() -> None:
    print("| preset | input | exit | min_exit_stride | training MACs | × baseline | training params | × baseline |")
    print("|---|---|---|---|---|---|---|---|")
    for preset, size, classes, overrides in SETTINGS:
        shape = (1, 3, size, size)
        with torch.device("meta"):
            base = build_preset(preset, classes, **overrides)
        base_macs, base_params = count_flops(base.inference_model(), shape)["macs"], count_parameters(base)
        for exit_type in sorted(EXITS):
            for stride in (2, 4):
                with torch.device("meta"):
                    model = build_preset(preset, classes, exit_type=exit_type, classify=True, min_exit_stride=stride,
                                         **overrides)
                macs, params = count_flops(model, shape)["macs"], count_parameters(model)
                print(f"| {preset} | {size} | {exit_type} | {stride} | {macs / 1e9:.2f} G | ×{macs / base_macs:.3f} "
                      f"| {params / 1e6:.2f} M | ×{params / base_params:.3f} |")


if __name__ == "__main__":
    main()
