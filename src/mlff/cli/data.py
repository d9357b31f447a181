"""``mlff data pack|info|split|to-deepmd``: prepare data sets, including ones larger than memory."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.table import Table

from mlff.cli.options import add_label_key_options, label_keys
from mlff.console import plain_console
from mlff.data.deepmd import write_deepmd_dir
from mlff.data.describe import count_structures, describe
from mlff.data.packed import pack
from mlff.data.readers import read_structures
from mlff.data.split import random_split, write_indices

LABELS = ("energy", "forces", "stress")


def add_parser(subparsers) -> None:
    """Register ``mlff data`` and its actions."""
    parser = subparsers.add_parser(
        "data",
        help="pack data sets into one HDF5 file, inspect them, split them",
        description="Prepare training data: pack structure files into one HDF5 file that "
                    "training streams from disk (data.stream: true), show what a data file "
                    "holds, and write random train/validation/test index files.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    pack_parser = actions.add_parser(
        "pack",
        help="read structure files, compute neighbour lists, write one packed .h5 file",
        description="Stream structure files (any format ASE reads; one frame in memory at a "
                    "time), compute every neighbour list once and write them with the labels "
                    "to one HDF5 file. Train on it with data.train: DATA.h5 and the same "
                    "model.cutoff; data.stream: true streams it from disk.",
    )
    pack_parser.add_argument("inputs", nargs="+", metavar="INPUT",
                             help="structure files, packed in order")
    pack_parser.add_argument("--out", required=True, metavar="DATA.h5",
                             help="the packed file (.h5 or .hdf5); replaced if it exists")
    pack_parser.add_argument("--cutoff", required=True, type=float, metavar="R",
                             help="neighbour-list radius in Å; must equal the model.cutoff of "
                                  "the models trained on the file")
    pack_parser.add_argument("--require", action="append", choices=LABELS, default=[],
                             metavar="LABEL", help="fail on a frame without this label "
                             "(energy, forces or stress; repeatable)")
    pack_parser.add_argument("--chunk-size", type=int, default=1024, metavar="N",
                             help="structures buffered in memory between writes (default: 1024)")
    add_label_key_options(pack_parser)
    pack_parser.set_defaults(func=run_pack)

    info_parser = actions.add_parser(
        "info",
        help="structures, atoms, elements, labels, neighbours and config_types of a data file",
        description="Show what a data file holds: a packed .h5 file or any file ASE reads.",
    )
    info_parser.add_argument("data", metavar="DATA",
                             help="a packed .h5 file or any ASE-readable file")
    info_parser.add_argument("--cutoff", type=float, default=None, metavar="R",
                             help="for an ASE file: count neighbours within R Å (a packed file "
                                  "uses its own cutoff)")
    info_parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_label_key_options(info_parser)
    info_parser.set_defaults(func=run_info)

    split_parser = actions.add_parser(
        "split",
        help="write random train/validation(/test) index files",
        description="Split the structures of a data file at random and write one 0-based "
                    "index per line to OUT_DIR/train_indices.txt, valid_indices.txt and, with "
                    "a test fraction, test_indices.txt: the files data.train_indices and "
                    "data.valid_indices read. Without a test fraction the split is the one "
                    "training makes with the same data.valid_fraction and seed.",
    )
    split_parser.add_argument("data", metavar="DATA",
                              help="a packed .h5 file or any ASE-readable file")
    split_parser.add_argument("--valid-fraction", type=float, required=True, metavar="F",
                              help="fraction of the structures for validation, in (0, 1)")
    split_parser.add_argument("--test-fraction", type=float, default=0.0, metavar="F",
                              help="fraction for a test set (default: 0, none)")
    split_parser.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    split_parser.add_argument("--out-dir", required=True, metavar="DIR",
                              help="folder for the index files")
    add_label_key_options(split_parser)
    split_parser.set_defaults(func=run_split)

    deepmd_parser = actions.add_parser(
        "to-deepmd",
        help="write the structures of a data file as DeePMD's deepmd/npy directory",
        description="Read labelled structures (any file ASE reads) and write them as a "
                    "deepmd/npy data directory (type.raw, type_map.raw, set.000/*.npy; "
                    "stress as virial = -stress * volume). Frames with other atoms go to "
                    "subsystems OUT_DIR/sys.NNN.",
    )
    deepmd_parser.add_argument("data", metavar="IN", help="any ASE-readable structure file")
    deepmd_parser.add_argument("out", metavar="OUT_DIR", help="new (or empty) output directory")
    add_label_key_options(deepmd_parser)
    deepmd_parser.set_defaults(func=run_to_deepmd)

    from mlff.cli import seed

    seed.add_parser(actions)


def run_pack(args: argparse.Namespace) -> int:
    """Pack ``args.inputs`` into ``args.out``."""
    console = plain_console(stderr=True)
    start = time.perf_counter()
    out = pack(args.inputs, args.out, args.cutoff, label_keys(args), require=args.require,
               chunk_size=args.chunk_size, progress=console.is_terminal)
    summary = describe(out)
    size = Path(out).stat().st_size / 1e6
    plain_console(soft_wrap=True).print(
        f"packed {summary['structures']} structures ({summary['atoms']} atoms, "
        f"{summary['mean_neighbors']:.1f} neighbours per atom within {summary['cutoff']} Å) from "
        f"{len(summary['sources'])} file(s) into {str(out)} ({size:.1f} MB) in "
        f"{time.perf_counter() - start:.1f} s",
        highlight=False,
    )
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Print what ``args.data`` holds."""
    summary = describe(args.data, label_keys(args), args.cutoff)
    console = plain_console()
    if args.json:
        console.print_json(json.dumps(summary))
        return 0
    n = summary["structures"]
    table = Table(title=str(args.data), show_header=False)
    kind = "deepmd/npy" if Path(args.data).is_dir() else "ASE-readable"
    table.add_row("format", "packed (HDF5)" if summary["format"] == "packed" else kind)
    table.add_row("structures", str(n))
    table.add_row("atoms", f"{summary['atoms']} ({summary['atoms'] / max(n, 1):.1f} per structure)")
    table.add_row("elements", ", ".join(f"{s} ({c})" for s, c in summary["elements"].items()))
    labels = summary["labels"].items()
    table.add_row("labels", ", ".join(f"{label} {count}/{n}" for label, count in labels))
    if summary["cutoff"] is not None:
        table.add_row("cutoff", f"{summary['cutoff']} Å")
        table.add_row("mean neighbours", f"{summary['mean_neighbors']:.2f} per atom")
    config_types = summary["config_types"].items()
    table.add_row("config_types", ", ".join(f"{k} ({v})" for k, v in config_types))
    for source in summary["sources"]:
        table.add_row("source", f"{source['path']}: {source['frames']} frames, "
                                f"sha256 {source['sha256'][:16]}…")
    console.print(table)
    return 0


def run_split(args: argparse.Namespace) -> int:
    """Write the index files of a random split of ``args.data``."""
    size = count_structures(args.data, label_keys(args))
    train, valid, test = random_split(size, args.valid_fraction, args.test_fraction, args.seed)
    out_dir = Path(args.out_dir)
    written = [write_indices(out_dir / "train_indices.txt", train),
               write_indices(out_dir / "valid_indices.txt", valid)]
    if args.test_fraction > 0:
        written.append(write_indices(out_dir / "test_indices.txt", test))
    console = plain_console()
    console.print(
        f"{size} structures: {len(train)} train, {len(valid)} valid"
        + (f", {len(test)} test" if args.test_fraction > 0 else "")
        + f" (seed {args.seed})", highlight=False,
    )
    for path in written:
        console.print(f"  {str(path)}", highlight=False)
    console.print(
        f"in a training config: data.train_indices: {str(written[0])}, "
        f"data.valid_indices: {str(written[1])}", highlight=False, soft_wrap=True,
    )
    return 0


def run_to_deepmd(args: argparse.Namespace) -> int:
    """Write ``args.data`` as a deepmd/npy directory ``args.out``."""
    structures = read_structures(args.data, label_keys(args))
    systems = write_deepmd_dir(structures, args.out)
    plain_console(soft_wrap=True).print(
        f"wrote {len(structures)} structures as {len(systems)} deepmd/npy system(s) to "
        f"{str(args.out)}", highlight=False,
    )
    return 0
