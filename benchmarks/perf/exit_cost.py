"""What the exits cost, by exit type and placement: training-model MACs and parameters against the baseline.

Counts on the meta device (no weights allocated, nothing trained), for the default benchmark's model and the
paper's DeepLab-v2 ResNet-101 at 321 x 321. ``min_exit_stride`` 2 is the authors' placement (the stride-2
stem is exit 1); 4 skips the stem, so the difference between the two rows is the stride-2 exit's own cost.

    python benchmarks/perf/exit_cost.py
"""

import argparse

from srlib.report.claims import training_counts
from srlib.models import EXITS

SETTINGS = (  # (preset, input side in px, classes, build overrides)
    ("fcn_mobilenetv2_100", 128, 10, {"output_stride": 16}),  # benchmarks/default.yaml
    ("deeplabv2_resnet101", 321, 21, {}),                      # the paper's
)


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    print("| preset | input | exit | min_exit_stride | training MACs | × baseline | training params | × baseline |")
    print("|---|---|---|---|---|---|---|---|")
    for preset, size, classes, overrides in SETTINGS:
        for exit_type in sorted(EXITS):
            for stride in (2, 4):
                counts = training_counts(preset, size, classes, exit_type, min_exit_stride=stride, **overrides)
                macs, params = counts["macs_train"], counts["params_train"]
                print(f"| {preset} | {size} | {exit_type} | {stride} | {macs / 1e9:.2f} G "
                      f"| ×{macs / counts['macs_test']:.3f} | {params / 1e6:.2f} M "
                      f"| ×{params / counts['params_test']:.3f} |")


if __name__ == "__main__":
    main()
