"""``python -m npp_ext.collection merge MANIFEST N``: merge the files of N finished shards.

The last shard to finish merges on its own; this is for shards that ran where they could
not see each other's files (copy their ``.<manifest>.parts/`` folders together first).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .manifest import merge


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit status 0 when merged, 1 when shard files are missing or disagree."""
    parser = argparse.ArgumentParser(prog="python -m npp_ext.collection")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("merge", help="merge the shards' records into the manifest")
    p.add_argument("manifest", help="the manifest path (default of a run: OUTPUT/manifest.jsonl)")
    p.add_argument("shards", type=int, help="how many shards the job had (N of --shard I/N)")
    args = parser.parse_args(argv)
    if args.shards < 1:
        parser.error("shards must be at least 1")
    if merge(args.manifest, args.shards):
        print(f"{args.manifest}: merged {args.shards} shard(s)")
        return 0
    print(
        f"npp-ext: error: not every shard of {args.shards} has finished with the same job "
        f"(see the .parts folder beside {args.manifest})",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
