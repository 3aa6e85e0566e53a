"""Count the parameters of DAT-T/S/B and DAT-T++/S++/B++ at 1000 classes against the
published figures; exit status 1 when one is more than 1% off.

Usage: /usr/bin/python3 tools/models/check_params.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from models.dat_family import TARGET_PARAMS, build, count_parameters  # noqa: E402

TOLERANCE = 0.01


def main():
    failed = 0
    for name, target in TARGET_PARAMS.items():
        count = count_parameters(build(name, 224, 1000))
        error = (count - target) / target
        ok = abs(error) <= TOLERANCE
        failed += not ok
        print(f"{name:10s} {count:>12,d}  published {target / 1e6:6.2f}M  {error * 100:+.3f}%  "
              f"{'ok' if ok else 'FAIL: more than 1% off'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
