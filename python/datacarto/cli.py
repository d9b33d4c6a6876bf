"""The ``datacarto`` command line: compute, regions, select, suspects, plot, html,
import-cartography and demo over the same API as the library.

Every subcommand prints ``datacarto: error: <what went wrong>`` on stderr and exits with code 2
on bad input (a missing file, a malformed dynamics file, a wrong option), without a traceback.

Example:
    >>> from datacarto.cli import main
    >>> main(["--version"])  # doctest: +SKIP
    datacarto 0.1.0
    0
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, NoReturn, Optional, Sequence, Tuple

PROG = "datacarto"
EXIT_BAD_INPUT = 2

_DESCRIPTION = """\
Data maps (Dataset Cartography) from training dynamics: per-example confidence, variability,
correctness and friends, easy / ambiguous / hard-to-learn regions, likely label errors and
pictures. A dynamics file is a .npy [epochs, examples, labels] of predicted probabilities."""

_EPILOG = """\
examples:
  datacarto demo                                   # digits with 5% flipped labels, no download
  datacarto compute dynamics.npy labels.npy -o statistics.parquet
  datacarto regions statistics.parquet --rule quantiles
  datacarto suspects statistics.parquet -n 20
  datacarto plot statistics.parquet -o map.png
  datacarto html statistics.parquet -o map.html

run 'datacarto <command> --help' for the options and examples of each command."""

_HELP: Dict[str, Tuple[str, str]] = {
    "compute": (
        "dynamics + gold labels -> per-example statistics (parquet or csv)",
        """examples:
  datacarto compute dynamics.npy labels.npy -o statistics.parquet
  datacarto compute dynamics.npy labels.npy --burn-in 2 -o stats.csv
  datacarto compute dynamics.npy labels.npy --epochs 2:10 --ddof 1 --threads 8
  datacarto compute dynamics.npy labels.npy --metadata train.jsonl --text-column sentence
  datacarto compute dynamics.npy labels.npy --label-names emotions.txt --task multilabel""",
    ),
    "regions": (
        "add a region column (easy / ambiguous / hard) and print the counts",
        """examples:
  datacarto regions statistics.parquet                      # tutorial thresholds, file updated in place
  datacarto regions statistics.parquet --easy 0.7 --hard 0.3
  datacarto regions statistics.parquet --rule quantiles --fraction 0.25 -o with_regions.parquet
  datacarto regions statistics.parquet --rule data-iq""",
    ),
    "select": (
        "the rows of one region, sorted the way the paper's selection sorts",
        """examples:
  datacarto select statistics.parquet ambiguous -n 100 -o ambiguous.csv
  datacarto select statistics.parquet hard --rule data-iq -n 20
  datacarto select statistics.parquet easy --by forgetting --descending --columns example,text,confidence""",
    ),
    "suspects": (
        "likely label errors, never-learned first, then lowest confidence",
        """examples:
  datacarto suspects statistics.parquet                 # top 50 as a table
  datacarto suspects statistics.parquet -n 200 -o suspects.csv
  datacarto suspects statistics.parquet --label joy     # one label of a multilabel map""",
    ),
    "plot": (
        "draw the data map (or example trajectories) to PNG, SVG or PDF",
        """examples:
  datacarto plot statistics.parquet -o map.png
  datacarto plot statistics.parquet -o map.svg --color forgetting --title "SST-2, 5 epochs"
  datacarto plot statistics.parquet -o traj.pdf --trajectories 3,17,42 --dynamics dynamics.npy
  datacarto plot statistics.parquet -o gratitude.png --label gratitude""",
    ),
    "html": (
        "write the interactive, self-contained HTML map",
        """examples:
  datacarto html statistics.parquet -o map.html
  datacarto html statistics.parquet -o map.html --text-column sentence""",
    ),
    "import-cartography": (
        "convert allenai/cartography training_dynamics/ logs into a dynamics .npy",
        """examples:
  datacarto import-cartography output/training_dynamics -o dynamics.npy
  datacarto import-cartography output/training_dynamics -o dynamics.npy --labels labels.npy --guids guids.txt --dtype float16
  datacarto import-cartography output/training_dynamics -o dynamics.npy && datacarto compute dynamics.npy dynamics-labels.npy""",
    ),
    "demo": (
        "train on scikit-learn's digits with 5%% flipped labels and map them (no download)",
        """examples:
  datacarto demo
  datacarto demo --output /tmp/digits-map --seed 3 --flip-fraction 0.1""",
    ),
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors read ``datacarto: error: ...`` like every other error."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{PROG}: error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``datacarto`` command."""
    from datacarto import __version__

    parser = _Parser(prog=PROG, description=_DESCRIPTION, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=_Parser)
    sub.required = True

    def command(name: str) -> argparse.ArgumentParser:
        summary, epilog = _HELP[name]
        return sub.add_parser(name, help=summary, description=(summary[0].upper() + summary[1:] + ".").replace("%%", "%"), epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)

    p = command("compute")
    p.add_argument("dynamics", help="dynamics .npy file [epochs, examples, labels]")
    p.add_argument("labels", help="gold labels .npy: class indices [N] or a 0/1 array [N, L] (multilabel)")
    p.add_argument("-o", "--output", default="statistics.parquet", help="output file, .parquet or .csv (default: %(default)s)")
    p.add_argument("--task", choices=("multiclass", "binary", "multilabel"), help="default: inferred from the labels and the file")
    p.add_argument("--correctness", choices=("argmax", "threshold"), help="default: argmax for multiclass, threshold otherwise")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold of the threshold rule (default: %(default)s)")
    window = p.add_mutually_exclusive_group()
    window.add_argument("--epochs", metavar="A:B", help="epoch window, Python-slice style: '2:' skips 2, ':5' keeps the first 5, '2:8'")
    window.add_argument("--burn-in", type=int, metavar="K", help="skip the first K epochs")
    p.add_argument("--ddof", type=int, default=0, help="variability's delta degrees of freedom (default: 0, the paper's)")
    p.add_argument("--threads", type=int, help="worker threads (default: all cores)")
    p.add_argument("--metadata", metavar="FILE", help="per-example columns to join, one row per example: .csv, .tsv, .parquet or .jsonl")
    p.add_argument("--text-column", metavar="COL", help="the metadata column holding the example text (renamed to 'text')")
    p.add_argument("--label-names", metavar="NAMES", help="class / label names: a text file with one per line, or a comma-separated list")
    _add_quiet(p)
    p.set_defaults(handler=_cmd_compute)

    p = command("regions")
    p.add_argument("statistics", help="statistics file (.parquet or .csv) from 'datacarto compute'")
    _add_rule_options(p)
    p.add_argument("-o", "--output", help="write the map with its region column here (default: update the input file)")
    p.set_defaults(handler=_cmd_regions)

    p = command("select")
    p.add_argument("statistics", help="statistics file (.parquet or .csv)")
    p.add_argument("region", choices=("easy", "ambiguous", "hard"))
    p.add_argument("-n", type=int, help="keep the first N rows (default: all)")
    p.add_argument("--by", metavar="COL[,COL]", help="sort by these columns instead (ascending unless --descending)")
    p.add_argument("--descending", action="store_true", help="sort --by descending")
    p.add_argument("--label", help="one label (index or name) of a multilabel map")
    _add_rule_options(p, default=None)
    _add_table_output(p)
    p.set_defaults(handler=_cmd_select)

    p = command("suspects")
    p.add_argument("statistics", help="statistics file (.parquet or .csv)")
    p.add_argument("-n", type=int, default=50, help="how many (default: %(default)s)")
    p.add_argument("--label", help="one label (index or name) of a multilabel map")
    _add_table_output(p)
    p.set_defaults(handler=_cmd_suspects)

    p = command("plot")
    p.add_argument("statistics", help="statistics file (.parquet or .csv)")
    p.add_argument("-o", "--output", required=True, help="image file: .png, .svg or .pdf")
    p.add_argument("--label", help="one label (index or name) of a multilabel map")
    p.add_argument("--color", default="correctness", help="colour statistic (default: %(default)s)")
    density = p.add_mutually_exclusive_group()
    density.add_argument("--density", dest="density", action="store_true", default=None, help="force the density rendering")
    density.add_argument("--scatter", dest="density", action="store_false", help="force a scatter of every point")
    p.add_argument("--title")
    p.add_argument("--trajectories", metavar="I,J,K", help="plot these examples' gold-label probability across epochs instead of the map")
    p.add_argument("--dynamics", metavar="FILE", help="dynamics .npy for --trajectories (default: the path stored with the statistics)")
    p.add_argument("--dpi", type=int, default=150, help="resolution of PNG output (default: %(default)s)")
    p.set_defaults(handler=_cmd_plot)

    p = command("html")
    p.add_argument("statistics", help="statistics file (.parquet or .csv)")
    p.add_argument("-o", "--output", default="map.html", help="HTML file (default: %(default)s)")
    p.add_argument("--text-column", metavar="COL", help="column shown on hover (default: 'text' if present)")
    p.add_argument("--color", default="correctness", help="initial colour statistic (default: %(default)s)")
    p.add_argument("--title")
    p.set_defaults(handler=_cmd_html)

    p = command("import-cartography")
    p.add_argument("directory", help="the training_dynamics/ folder (dynamics_epoch_*.jsonl)")
    p.add_argument("-o", "--output", default="dynamics.npy", help="dynamics .npy to write (default: %(default)s)")
    p.add_argument("--labels", metavar="FILE", default=None, help="write the gold labels here (default: <output>-labels.npy)")
    p.add_argument("--guids", metavar="FILE", default=None, help="write the example guids here, one per line (default: <output>-guids.txt)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "float64"), help="stored dtype (default: %(default)s)")
    p.add_argument("--id-field", default="guid", help="the JSON key holding each example's id (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    _add_quiet(p)
    p.set_defaults(handler=_cmd_import_cartography)

    p = command("demo")
    p.add_argument("-o", "--output", default="datacarto-demo", help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the demo's)")
    p.add_argument("--flip-fraction", type=float, default=0.05, help="fraction of labels flipped (default: %(default)s)")
    _add_quiet(p)
    p.set_defaults(handler=_cmd_demo)
    return parser


def _add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _add_rule_options(p: argparse.ArgumentParser, default: Optional[str] = "thresholds") -> None:
    extra = "" if default else " (default: the file's regions, or thresholds when it has none)"
    p.add_argument("--rule", choices=("thresholds", "quantiles", "data-iq"), default=default, help=f"region rule{' (default: %(default)s)' if default else extra}")
    p.add_argument("--easy", type=float, help="thresholds: confidence above this is easy (0.6); data-iq: at or above (0.75)")
    p.add_argument("--hard", type=float, help="thresholds: confidence below this is hard (0.4); data-iq: at or below (0.25)")
    p.add_argument("--fraction", type=float, help="quantiles: the fraction in each selection (0.33)")
    p.add_argument("--aleatoric-quantile", type=float, help="data-iq: the aleatoric cut-off quantile (0.5, the median)")


def _add_table_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="write the rows to .csv, .tsv, .parquet or .jsonl (default: print a table)")
    p.add_argument("--columns", metavar="A,B,C", help="keep only these columns")


# ---------------------------------------------------------------------- commands


def _cmd_compute(args: argparse.Namespace) -> int:
    from datacarto.datamap import DataMap

    epochs: Any = None
    if args.epochs is not None:
        epochs = _parse_window(args.epochs)
    elif args.burn_in is not None:
        epochs = args.burn_in
    output = Path(args.output)
    _check_suffix(output, (".parquet", ".pq", ".csv"), "--output")
    metadata = _read_table(args.metadata, "--metadata") if args.metadata else None
    if args.text_column:
        if metadata is None:
            raise ValueError("--text-column: needs --metadata")
        if args.text_column not in metadata.columns:
            raise ValueError(f"--text-column: expected a column of {args.metadata}, found {args.text_column!r}; columns: {', '.join(metadata.columns)}")
        if args.text_column != "text":
            if "text" in metadata.columns:
                raise ValueError(f"--text-column: {args.metadata} already has a 'text' column besides {args.text_column!r}")
            metadata = metadata.rename({args.text_column: "text"})
    dm = DataMap.from_dynamics(
        args.dynamics,
        args.labels,
        metadata,
        label_names=_label_names(args.label_names),
        task=args.task,
        correctness=args.correctness,
        threshold=args.threshold,
        epochs=epochs,
        ddof=args.ddof,
        threads=args.threads,
        progress=not args.quiet,
    )
    dm.write(output)
    start, stop = dm.epochs or (0, 0)
    print(f"{dm.n_examples} examples, {dm.task}, {dm.n_labels} label column(s), epochs {start}..{stop - 1}", file=sys.stderr)
    print(f"wrote {output}", file=sys.stderr)
    return 0


def _cmd_regions(args: argparse.Namespace) -> int:
    from datacarto.datamap import DataMap

    dm = _with_regions(DataMap.read(args.statistics), args, force=True)
    _print_counts(dm)
    output = Path(args.output) if args.output else Path(args.statistics)
    dm.write(output)
    print(f"wrote {output}", file=sys.stderr)
    return 0


def _cmd_select(args: argparse.Namespace) -> int:
    from datacarto.datamap import DataMap

    dm = _with_regions(DataMap.read(args.statistics), args, force=args.rule is not None)
    by = [c.strip() for c in args.by.split(",") if c.strip()] if args.by else None
    rows = dm.select(args.region, n=_non_negative(args.n, "-n"), by=by, descending=args.descending if by else None, label=_label_arg(args.label))
    _emit_rows(rows, args)
    return 0


def _cmd_suspects(args: argparse.Namespace) -> int:
    from datacarto.datamap import DataMap

    dm = DataMap.read(args.statistics)
    rows = dm.suspects(_non_negative(args.n, "-n"), label=_label_arg(args.label))
    _emit_rows(rows, args)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from datacarto.datamap import DataMap

    output = Path(args.output)
    _check_suffix(output, (".png", ".svg", ".pdf"), "--output")
    dm = DataMap.read(args.statistics, dynamics=args.dynamics)
    if args.trajectories:
        examples = _parse_int_list(args.trajectories, "--trajectories")
        figure = dm.plot_trajectories(examples, label=_label_arg(args.label))
    else:
        figure = dm.plot(label=_label_arg(args.label), color=args.color, density=args.density, title=args.title)
    # a bare matplotlib Figure (no pyplot): saving needs no display and leaves nothing open
    figure.savefig(output, dpi=args.dpi)
    print(f"wrote {output}", file=sys.stderr)
    return 0


def _cmd_html(args: argparse.Namespace) -> int:
    from datacarto.datamap import DataMap

    output = Path(args.output)
    _check_suffix(output, (".html", ".htm"), "--output")
    dm = DataMap.read(args.statistics)
    written = dm.to_html(output, text_column=args.text_column, color=args.color, title=args.title)
    print(f"wrote {written}", file=sys.stderr)
    return 0


def _cmd_import_cartography(args: argparse.Namespace) -> int:
    import numpy as np

    from datacarto import importers

    output = Path(args.output)
    _check_suffix(output, (".npy",), "--output")
    result = importers.import_cartography(args.directory, output, dtype=args.dtype, id_field=args.id_field, overwrite=args.overwrite, progress=not args.quiet)
    labels, guids = result.labels, list(result.guids)
    stem = output.with_suffix("")
    labels_path = Path(args.labels) if args.labels else stem.with_name(stem.name + "-labels.npy")
    guids_path = Path(args.guids) if args.guids else stem.with_name(stem.name + "-guids.txt")
    np.save(labels_path, np.asarray(labels))
    guids_path.write_text("".join(f"{g}\n" for g in guids))
    from datacarto import read_header

    shape = read_header(output)["shape"]
    print(f"{shape[0]} epochs, {shape[1]} examples, {shape[2]} labels", file=sys.stderr)
    print(f"wrote {output}, {labels_path} and {guids_path}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from datacarto.demo import run_demo

    kwargs: Dict[str, Any] = {"seed": args.seed, "flip_fraction": args.flip_fraction, "progress": not args.quiet}
    if args.epochs is not None:
        kwargs["epochs"] = args.epochs
    run_demo(args.output, **kwargs)
    return 0


# ---------------------------------------------------------------------- helpers


def _with_regions(dm: Any, args: argparse.Namespace, *, force: bool) -> Any:
    options = {"easy": args.easy, "hard": args.hard, "fraction": args.fraction, "aleatoric_quantile": args.aleatoric_quantile}
    given = {k: v for k, v in options.items() if v is not None}
    if not force and not given and "region" in dm.frame.columns:
        return dm
    return dm.regions(args.rule or "thresholds", **given)


def _print_counts(dm: Any) -> None:
    counts = dm.region_counts()
    total = sum(counts.values())
    rule = dm.region_rule or {}
    params = ", ".join(f"{k}={v}" for k, v in rule.items() if k != "rule")
    print(f"regions by {rule.get('rule')} ({params}):")
    for name, count in counts.items():
        print(f"  {name:<10} {count:>9}  {count / total:6.1%}" if total else f"  {name:<10} {count:>9}")
    if dm.task == "multilabel":
        with _table_config():
            print(dm.region_counts(per_label=True))


def _emit_rows(rows: Any, args: argparse.Namespace) -> None:
    if args.columns:
        wanted = [c.strip() for c in args.columns.split(",") if c.strip()]
        missing = [c for c in wanted if c not in rows.columns]
        if missing:
            raise ValueError(f"--columns: unknown column(s) {', '.join(missing)}; columns: {', '.join(rows.columns)}")
        rows = rows.select(wanted)
    if args.output:
        output = Path(args.output)
        suffix = _check_suffix(output, (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson"), "--output")
        if suffix in (".csv", ".tsv"):
            rows.write_csv(output, separator="\t" if suffix == ".tsv" else ",")
        elif suffix in (".parquet", ".pq"):
            rows.write_parquet(output)
        else:
            rows.write_ndjson(output)
        print(f"wrote {rows.height} rows to {output}", file=sys.stderr)
    else:
        if not args.columns:
            # A readable subset on screen; -o writes every column.
            keep = [c for c in _SCREEN_COLUMNS if c in rows.columns]
            keep += [c for c in rows.columns if c not in keep and c not in _STAT_ONLY_COLUMNS]
            rows = rows.select(keep)
        with _table_config(rows.height):
            print(rows)


_SCREEN_COLUMNS = ("rank", "example", "label", "label_name", "gold", "gold_name", "confidence", "variability", "correctness", "never_learned", "margin", "region")
_STAT_ONLY_COLUMNS = frozenset({"forgetting", "first_learned", "threshold_closeness", "aleatoric", "el2n"})


def _table_config(rows: int = 50) -> Any:
    import polars as pl

    return pl.Config(tbl_rows=max(rows, 1), tbl_cols=12, fmt_str_lengths=60, tbl_width_chars=160)


def _read_table(path: str, argument: str) -> Any:
    import polars as pl

    if not os.path.exists(path):
        raise FileNotFoundError(f"{argument}: {path}: file not found")
    suffix = _check_suffix(Path(path), (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson"), argument)
    try:
        if suffix == ".csv":
            return pl.read_csv(path, infer_schema_length=10000)
        if suffix == ".tsv":
            return pl.read_csv(path, separator="\t", quote_char=None, infer_schema_length=10000)
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
        return pl.read_ndjson(path)
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"{argument}: {path}: could not read it as {suffix[1:]} ({str(exc).splitlines()[0]})") from exc


def _label_names(value: Optional[str]) -> Optional[List[str]]:
    if value is None:
        return None
    if os.path.exists(value):
        return [line.strip() for line in Path(value).read_text().splitlines() if line.strip()]
    if "," not in value and value.endswith((".txt", ".csv", ".tsv")):
        raise FileNotFoundError(f"--label-names: {value}: file not found")
    return [name.strip() for name in value.split(",")]


def _parse_window(text: str) -> Tuple[Optional[int], Optional[int]]:
    if ":" not in text:
        raise ValueError(f"--epochs: expected a window A:B (e.g. '2:' or '2:8'; use --burn-in K to skip K epochs), found {text!r}")
    start, _, stop = text.partition(":")
    try:
        return (int(start) if start.strip() else None, int(stop) if stop.strip() else None)
    except ValueError:
        raise ValueError(f"--epochs: expected integers in A:B, found {text!r}") from None


def _parse_int_list(text: str, argument: str) -> List[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{argument}: expected comma-separated example indices like 3,17,42, found {text!r}") from None
    if not values:
        raise ValueError(f"{argument}: expected at least one example index, found {text!r}")
    return values


def _label_arg(value: Optional[str]) -> Any:
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


def _non_negative(value: Optional[int], argument: str) -> Optional[int]:
    if value is not None and value < 0:
        raise ValueError(f"{argument}: expected a non-negative count, found {value}")
    return value


def _check_suffix(path: Path, allowed: Sequence[str], argument: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise ValueError(f"{argument}: {path}: expected a file ending in {', '.join(allowed)}, found {suffix or 'no suffix'!r}")
    return suffix


def _error_message(exc: BaseException) -> str:
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in message:
        message = f"{exc.filename}: {message}"
    elif isinstance(exc, OSError) and exc.strerror and exc.filename:
        message = f"{exc.filename}: {exc.strerror}"
    # one line: the first line of a multi-line message
    return message.splitlines()[0]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``datacarto`` command line; returns the exit code (0 on success, 2 on bad input).

    Example:
        >>> main(["suspects", "missing.parquet"])  # doctest: +SKIP
        datacarto: error: missing.parquet: statistics file not found
        2
    """
    from polars.exceptions import PolarsError

    from datacarto import DatacartoError

    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exit_:  # --help, --version and usage errors
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else EXIT_BAD_INPUT
    try:
        return int(args.handler(args))
    except (DatacartoError, ValueError, FileNotFoundError, TypeError, OSError, PolarsError) as exc:
        # bad input: one line, no traceback (PolarsError: e.g. a metadata file polars cannot write)
        print(f"{PROG}: error: {_error_message(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
