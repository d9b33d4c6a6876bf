"""The ``datacarto`` command line: compute, regions, select, suspects, label-issues, plot, html,
import-cartography, flip-labels, noise-report and demo over the same API as the library.

How it talks:

- Bad input (a missing file, a malformed dynamics file, a wrong option) prints one line
  ``datacarto: error: <what went wrong>`` on stderr, naming the flag (``--threads``, not the
  Python argument ``threads``), and exits with code 2; usage errors print the usage first.
- Everything that can be checked before the work starts is checked first (output suffix and
  folder, the labels against the dynamics file's header, label names), so no progress bar
  runs ahead of an error.
- Every output file is written beside its target and renamed into place (write, fsync,
  ``os.replace``): a crash or Ctrl-C leaves the old file or the new one, never a broken one.
- Progress bars go to a terminal only (``--progress`` forces them, ``-q`` turns them off).
- A warning from datacarto (``import-cartography``'s counts of the lenient cases it accepted)
  prints one line ``datacarto: warning: <what>``.
- Ctrl-C prints ``datacarto: interrupted`` and exits 130. A missing optional dependency or an
  unexpected error from a dependency prints one line and exits 1; ``DATACARTO_DEBUG=1`` adds
  the traceback.

Example:
    >>> from datacarto.cli import main
    >>> main(["--version"])  # doctest: +SKIP
    datacarto 0.1.0
    0
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NoReturn, Optional, Sequence, Tuple

from datacarto._scores import SCORES as _SCORES

PROG = "datacarto"
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130
#: Set this environment variable to 1 to see the traceback behind an error.
DEBUG_VARIABLE = "DATACARTO_DEBUG"
#: The largest ``--threads`` accepted (a typo like 10**30 is refused before any work).
MAX_THREADS = 4096
#: import-cartography's dynamics file when -o is not given (and --metrics is not given alone)
_DEFAULT_IMPORT = "dynamics.npy"
#: import-cartography --burn-out when not given: the original's default (all epochs, up to 100)
_DEFAULT_BURN_OUT = 100

_DESCRIPTION = """\
Data maps (Dataset Cartography) from training dynamics: per-example confidence, variability,
correctness and friends, easy / ambiguous / hard-to-learn regions, likely label errors and
pictures. A dynamics file is a .npy [epochs, examples, labels] of predicted probabilities."""

_EPILOG = """\
examples:
  datacarto demo                                   # digits with 5% flipped labels, no download
  datacarto compute dynamics.npy labels.npy -o statistics.parquet
  datacarto regions statistics.parquet --rule quantiles --in-place
  datacarto suspects statistics.parquet -n 20
  datacarto label-issues statistics.parquet -o issues.csv
  datacarto plot statistics.parquet -o map.png
  datacarto html statistics.parquet -o map.html

Errors print one line and exit 2 (bad input) or 1 (a missing dependency, an unexpected
failure; DATACARTO_DEBUG=1 shows the traceback); Ctrl-C exits 130. Outputs are written
atomically: an interrupted command leaves the previous file in place.

run 'datacarto <command> --help' for the options and examples of each command."""

_HELP: Dict[str, Tuple[str, str]] = {
    "compute": (
        "dynamics + gold labels -> per-example statistics (parquet or csv)",
        """examples:
  datacarto compute dynamics.npy labels.npy -o statistics.parquet
  datacarto compute dynamics.npy labels.npy --burn-in 2 -o stats.csv
  datacarto compute dynamics.npy labels.npy --epochs 2:10 --ddof 1 --threads 8
  datacarto compute dynamics.npy labels.npy --metadata train.jsonl --text-column sentence
  datacarto compute dynamics.npy labels.npy --label-names emotions.txt --task multilabel
  datacarto compute dynamics.npy labels.npy --compat cartography --epochs :4   # the original's rules, --burn_out 4
  datacarto compute 'shards/rank*.npy' labels.npy --shards examples     # one file per rank, in sorted order
  datacarto compute 'epochs/*.npy' labels.npy --shards epochs --workers 4   # on a local Dask cluster""",
    ),
    "regions": (
        "add a region column (easy / ambiguous / hard) and print the counts",
        """Without -o or --in-place the counts are printed and nothing is written.

examples:
  datacarto regions statistics.parquet                      # print the counts, write nothing
  datacarto regions statistics.parquet --in-place           # add the region column to the file
  datacarto regions statistics.parquet --easy 0.7 --hard 0.3 -o with_regions.parquet
  datacarto regions statistics.parquet --rule quantiles --fraction 0.25 -o with_regions.csv
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
        "likely label errors, most suspicious first (default score: 1 - confidence)",
        f"""The suspicion column holds the score the rows were ranked by. Scores: {", ".join(_SCORES)}
(docs/label-errors.md).

examples:
  datacarto suspects statistics.parquet                 # top 50 as a table
  datacarto suspects statistics.parquet -n 200 -o suspects.csv
  datacarto suspects statistics.parquet --score margin  # rank by -AUM instead
  datacarto suspects statistics.parquet --label joy     # one label of a multilabel map""",
    ),
    "label-issues": (
        "flag the labels that are probably wrong and estimate how many (confident learning)",
        """Confident learning (Northcutt et al. 2021) on each class's mean probability over the epochs,
read from the dynamics file the statistics came from (or --dynamics). Prints the estimate (on
stderr) and the flagged rows (on stdout), most suspicious first; -o writes them (every column, plus 'suggested': the
class the example confidently belongs to). See docs/label-errors.md.

examples:
  datacarto label-issues statistics.parquet
  datacarto label-issues statistics.parquet -o issues.csv --dynamics run/dynamics.npy""",
    ),
    "flip-labels": (
        "flip a fraction of the labels on purpose (seeded) to benchmark the scores on your data",
        """Writes the noisy labels (-o) and the indices of the flipped examples (--flipped). Train and
record on the noisy labels, compute the map, then run 'datacarto noise-report'.

examples:
  datacarto flip-labels labels.npy -o noisy.npy --fraction 0.1 --seed 0
  datacarto flip-labels labels.npy -o noisy.npy --kind pairs --flipped flipped.npy
  datacarto flip-labels labels.npy -o noisy.npy --kind confusion --confusion confusion.npy""",
    ),
    "noise-report": (
        "how well each suspicion score finds known flipped labels (AUROC, AUPRC, precision at k)",
        """Also checks label-issues' estimate and flags when the map's dynamics file is at hand.

examples:
  datacarto noise-report statistics.parquet flipped.npy
  datacarto noise-report statistics.parquet flipped.npy -k 100 -o report.csv""",
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
        "convert allenai/cartography training_dynamics/ logs into a dynamics .npy, or its metrics table",
        """With --metrics FILE alone, only the original's metrics table is written (no dynamics file);
add -o to write both. The original's lenient cases (--gold-changes, --missing) are counted in
a warning, never silent. Porting guide: docs/porting.md.

examples:
  datacarto import-cartography output/training_dynamics -o dynamics.npy
  datacarto import-cartography output/training_dynamics -o dynamics.npy --labels labels.npy --guids guids.txt --dtype float16
  datacarto import-cartography output/training_dynamics -o dynamics.npy && datacarto compute dynamics.npy dynamics-labels.npy
  datacarto import-cartography output --metrics td_metrics.jsonl    # the original's train_dy_filtering.py metrics
  datacarto import-cartography output --metrics td_metrics.jsonl --burn-out 4 --include-ci    # its --burn_out 4 --include_ci
  datacarto import-cartography output --metrics td_metrics.jsonl -o dynamics.npy --dtype float64
  datacarto import-cartography qnli_run --guid-transform strip_last --gold-changes first --missing drop -o dynamics.npy
  datacarto import-cartography output -o dynamics.npy --dtype float64 && datacarto compute dynamics.npy dynamics-labels.npy --compat cartography""",
    ),
    "demo": (
        "train on scikit-learn's digits with 5%% flipped labels and map them (no download)",
        """examples:
  datacarto demo
  datacarto demo --output /tmp/digits-map --seed 3 --flip-fraction 0.1""",
    ),
}

# Library arguments whose name differs from the flag that sets them, per command.
_EXTRA_FLAG_NAMES: Dict[str, Dict[str, str]] = {
    "plot": {"examples": "--trajectories"},
    "import-cartography": {"output_path": "--output", "metrics_path": "--metrics"},
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors print the usage once, then one ``datacarto: error:`` line."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{PROG}: error: {message}\n")


def _count_type(minimum: int, maximum: Optional[int] = None, what: str = "integer") -> Callable[[str], int]:
    """An argparse type: an int in [minimum, maximum], refused with a message naming the range."""

    def parse(text: str) -> int:
        expected = f"expected {what} >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{expected}, found {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{expected}, found {text!r}")
        return value

    return parse


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
    p.add_argument("dynamics", help="dynamics .npy file [epochs, examples, labels]; with --shards, a quoted glob pattern of shard files ('shards/*.npy', sorted)")
    p.add_argument("labels", help="gold labels .npy: class indices [N] or a 0/1 array [N, L] (multilabel)")
    p.add_argument("-o", "--output", default="statistics.parquet", help="output file, .parquet or .csv, replaced atomically if it exists (default: %(default)s)")
    p.add_argument("--task", choices=("multiclass", "binary", "multilabel"), help="default: inferred from the labels and the file")
    p.add_argument(
        "--correctness",
        choices=("argmax", "argmax_first_index", "threshold"),
        help="argmax: a tie is wrong; argmax_first_index: np.argmax's rule, the first largest column wins a tie; threshold: p >= --threshold "
        "(default: argmax for multiclass, threshold otherwise)",
    )
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold of the threshold rule (default: %(default)s)")
    window = p.add_mutually_exclusive_group()
    window.add_argument("--epochs", metavar="A:B", help="epoch window, Python-slice style: '2:' skips 2, ':5' keeps the first 5, '2:8'")
    window.add_argument("--burn-in", type=_count_type(0, what="a count"), metavar="K", help="skip the first K epochs")
    p.add_argument("--ddof", type=_count_type(0, what="a count"), default=0, help="variability's delta degrees of freedom (default: 0, the paper's)")
    p.add_argument("--threads", type=_count_type(1, MAX_THREADS, what="a thread count"), help="worker threads (default: all cores)")
    p.add_argument("--metadata", metavar="FILE", help="per-example columns to join, one row per example: .csv, .tsv, .parquet or .jsonl")
    p.add_argument("--text-column", metavar="COL", help="the metadata column holding the example text (renamed to 'text')")
    p.add_argument("--label-names", metavar="NAMES", help="class / label names: a text file with one per line, or a comma-separated list")
    p.add_argument(
        "--compat",
        choices=("cartography",),
        help="cartography: the original Cartography code's conventions (np.argmax's tie rule, ddof 0); its --burn_out B is --epochs :B, not --burn-in",
    )
    p.add_argument(
        "--shards",
        choices=("examples", "epochs"),
        help="DYNAMICS is a glob of shard files, in sorted order: each holds every epoch of consecutive examples (examples) or consecutive epochs of every example (epochs); LABELS covers all examples",
    )
    cluster = p.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="ADDR", help="with --shards: run on the Dask cluster at ADDR (tcp://host:8786); the workers read the shard paths")
    cluster.add_argument("--workers", type=_count_type(1, 1024, what="a worker count"), metavar="N", help="with --shards: run on a local Dask cluster of N worker processes")
    _add_progress(p)
    _finish(p, "compute", _cmd_compute)

    p = command("regions")
    p.add_argument("statistics", help="statistics file (.parquet or .csv) from 'datacarto compute'")
    _add_rule_options(p)
    target = p.add_mutually_exclusive_group()
    target.add_argument("-o", "--output", metavar="FILE", help="write the map with its region column to FILE (.parquet or .csv)")
    target.add_argument("--in-place", action="store_true", help="rewrite the input file with its region column (atomically)")
    _finish(p, "regions", _cmd_regions)

    p = command("select")
    p.add_argument("statistics", help="statistics file (.parquet or .csv)")
    p.add_argument("region", choices=("easy", "ambiguous", "hard"))
    p.add_argument("-n", type=_count_type(0, what="a count"), help="keep the first N rows (default: all)")
    p.add_argument("--by", metavar="COL[,COL]", help="sort by these columns instead (ascending unless --descending)")
    p.add_argument("--descending", action="store_true", help="sort --by descending")
    p.add_argument("--label", help="one label (index or name) of a multilabel map")
    _add_rule_options(p, default=None)
    _add_table_output(p)
    _finish(p, "select", _cmd_select)

    p = command("suspects")
    p.add_argument("statistics", help="statistics file (.parquet or .csv)")
    p.add_argument("-n", type=_count_type(0, what="a count"), default=50, help="how many (default: %(default)s)")
    p.add_argument("--label", help="one label (index or name) of a multilabel map")
    p.add_argument("--score", choices=_score_names(), default=None, help=f"the suspicion score to rank by (default: {_score_names()[0]})")
    _add_table_output(p)
    _finish(p, "suspects", _cmd_suspects)

    p = command("label-issues")
    p.add_argument("statistics", help="statistics file (.parquet or .csv)")
    p.add_argument("--dynamics", metavar="FILE", help="the dynamics .npy the statistics came from (default: the path stored with them)")
    _add_table_output(p)
    _finish(p, "label-issues", _cmd_label_issues)

    p = command("flip-labels")
    p.add_argument("labels", help="gold labels .npy: class indices [N]")
    p.add_argument("-o", "--output", required=True, help="the noisy labels .npy to write")
    p.add_argument("--flipped", metavar="FILE", help="write the flipped examples' indices here (default: <output>-flipped.npy)")
    p.add_argument("--fraction", type=float, default=0.1, help="fraction of labels to flip, in [0, 1) (default: %(default)s)")
    p.add_argument("--kind", choices=("uniform", "pairs", "confusion"), default="uniform", help="uniform: to any other class; pairs: each class to a fixed partner; confusion: by --confusion weights (default: %(default)s)")
    p.add_argument("--confusion", metavar="FILE", help="with --kind confusion: an [L, L] .npy of flip weights (row: true class)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    _finish(p, "flip-labels", _cmd_flip_labels)

    p = command("noise-report")
    p.add_argument("statistics", help="statistics file (.parquet or .csv) of a map recorded on the noisy labels")
    p.add_argument("flipped", help="the flipped examples' indices .npy (from 'datacarto flip-labels')")
    p.add_argument("-k", type=_count_type(1, what="a count"), help="precision at k (default: the number flipped)")
    p.add_argument("--dynamics", metavar="FILE", help="the dynamics .npy, for label-issues' check (default: the path stored with the statistics)")
    p.add_argument("-o", "--output", help="write the table to .csv, .tsv, .parquet or .jsonl")
    _finish(p, "noise-report", _cmd_noise_report)

    p = command("plot")
    p.add_argument("statistics", help="statistics file (.parquet or .csv)")
    p.add_argument("-o", "--output", required=True, help="image file: .png, .svg or .pdf")
    p.add_argument("--label", help="one label (index or name) of a multilabel map")
    p.add_argument("--color", default="correctness", help="colour statistic (default: %(default)s)")
    density = p.add_mutually_exclusive_group()
    density.add_argument("--density", dest="density", action="store_true", default=None, help="force the density rendering")
    density.add_argument("--scatter", dest="density", action="store_false", help="force a scatter of every point")
    p.add_argument("--title", help="the figure title (default: the map's settings)")
    p.add_argument("--trajectories", metavar="I,J,K", help="plot these examples' gold-label probability across epochs instead of the map")
    p.add_argument("--dynamics", metavar="FILE", help="dynamics .npy for --trajectories (default: the path stored with the statistics)")
    p.add_argument("--dpi", type=_count_type(1, 10_000, what="a resolution"), default=150, help="resolution of PNG output (default: %(default)s)")
    _finish(p, "plot", _cmd_plot)

    p = command("html")
    p.add_argument("statistics", help="statistics file (.parquet or .csv)")
    p.add_argument("-o", "--output", default="map.html", help="HTML file (default: %(default)s)")
    p.add_argument("--text-column", metavar="COL", help="column shown on hover (default: 'text' if present)")
    p.add_argument("--color", default="correctness", help="initial colour statistic (default: %(default)s)")
    p.add_argument("--title", help="the page title (default: 'datacarto data map')")
    _finish(p, "html", _cmd_html)

    p = command("import-cartography")
    p.add_argument("directory", help="the training_dynamics/ folder (dynamics_epoch_*.jsonl), or the run folder holding it")
    p.add_argument("-o", "--output", metavar="FILE", default=None, help=f"dynamics .npy to write (default: {_DEFAULT_IMPORT}; none when only --metrics is given)")
    p.add_argument("--labels", metavar="FILE", default=None, help="write the gold labels here (default: <output>-labels.npy)")
    p.add_argument("--guids", metavar="FILE", default=None, help="write the example guids here, one per line (default: <output>-guids.txt)")
    p.add_argument("--dtype", default=None, choices=("float32", "float16", "float64"), help="stored dtype of the dynamics file (default: float32; float64 keeps logits within ~1e-7 apart)")
    p.add_argument("--id-field", default="guid", help="the JSON key holding each example's id (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (the dynamics, labels, guids and metrics files)")
    p.add_argument("--metrics", metavar="FILE", default=None, help="write the original's metrics table (its td_metrics.jsonl columns and conventions) as JSON lines (.jsonl)")
    p.add_argument("--burn-out", type=_count_type(1, what="an epoch count"), default=None, metavar="B", help=f"with --metrics: use the FIRST B epochs, as the original's --burn_out (default: {_DEFAULT_BURN_OUT}, the original's)")
    p.add_argument("--include-ci", action="store_true", help="with --metrics: the original's --include_ci variability sqrt(var + var^2/(E-1))")
    p.add_argument("--guid-transform", choices=("strip_last",), default=None, help="strip_last: drop each guid's last character (the original's QNLI option)")
    p.add_argument(
        "--gold-changes",
        choices=("error", "first"),
        default=None,
        help="a gold label that changes in a later epoch: refuse it (error) or keep epoch 0's as the original does (first; counted in a warning) (default: error for the dynamics file, first for --metrics)",
    )
    p.add_argument(
        "--missing",
        choices=("error", "drop", "average"),
        default=None,
        help="an example absent from some epoch: refuse it (error), leave it out (drop) or, with --metrics only, average it over the epochs it has as the original does (average); "
        "dropped and averaged examples are counted in a warning (default: error for the dynamics file, average for --metrics)",
    )
    _add_progress(p)
    _finish(p, "import-cartography", _cmd_import_cartography)

    p = command("demo")
    p.add_argument("-o", "--output", default="datacarto-demo", help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the label flips and the model (default: %(default)s)")
    p.add_argument("--epochs", type=_count_type(1, what="an epoch count"), default=None, help="training epochs (default: the demo's)")
    p.add_argument("--flip-fraction", type=float, default=0.05, help="fraction of labels flipped (default: %(default)s)")
    _add_progress(p)
    _finish(p, "demo", _cmd_demo)
    return parser


def _finish(p: argparse.ArgumentParser, name: str, handler: Callable[[argparse.Namespace], int]) -> None:
    """Attach the handler and the map from library argument names to this command's flags."""
    flags: Dict[str, str] = {}
    for action in p._actions:  # argparse has no public accessor for a parser's actions
        if action.option_strings and action.dest not in ("help", argparse.SUPPRESS):
            flags.setdefault(action.dest, max(action.option_strings, key=len))
    flags.update(_EXTRA_FLAG_NAMES.get(name, {}))
    p.set_defaults(handler=handler, flag_names=flags)


def _add_progress(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", dest="progress", action="store_const", const=False, default=None, help="no progress bars")
    group.add_argument("--progress", dest="progress", action="store_const", const=True, help="progress bars even when stderr is not a terminal (default: only on a terminal)")


def _add_rule_options(p: argparse.ArgumentParser, default: Optional[str] = "thresholds") -> None:
    extra = "" if default else " (default: the file's regions, or thresholds when it has none)"
    p.add_argument("--rule", choices=("thresholds", "quantiles", "data-iq", "class-quantiles"), default=default, help=f"region rule{' (default: %(default)s)' if default else extra}")
    p.add_argument("--easy", type=float, help="thresholds: confidence above this is easy (0.6); data-iq: at or above (0.75)")
    p.add_argument("--hard", type=float, help="thresholds: confidence below this is hard (0.4); data-iq: at or below (0.25)")
    p.add_argument("--fraction", type=float, help="quantiles, class-quantiles: the fraction in each selection (0.33)")
    p.add_argument("--aleatoric-quantile", type=float, help="data-iq: the aleatoric cut-off quantile (0.5, the median)")


def _add_table_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="write the rows to .csv, .tsv, .parquet or .jsonl (default: print a table)")
    p.add_argument("--columns", metavar="A,B,C", help="keep only these columns")


# ---------------------------------------------------------------------- commands

_MAP_SUFFIXES = (".parquet", ".pq", ".csv")
_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson")


def _cmd_compute(args: argparse.Namespace) -> int:
    import datacarto as dc
    from datacarto._args import resolve
    from datacarto.datamap import DataMap

    # Everything checkable is checked before the computation (and its progress bar) starts.
    epochs: Any = None
    if args.epochs is not None:
        epochs = _parse_window(args.epochs)
    elif args.burn_in is not None:
        args.flag_names["epochs"] = "--burn-in"
        epochs = args.burn_in
    output = _output_target(args.output, _MAP_SUFFIXES, "--output")
    shards: Optional[List[str]] = None
    if args.shards is not None:
        from datacarto._shards import expand, layout

        shards = expand(args.dynamics)
        shape = layout(shards, args.shards).shape  # every shard's header, checked
        _require_npy_labels(args.labels)
    else:
        _require_regular_file(args.dynamics, "dynamics")
        _require_npy_labels(args.labels)
        shape = tuple(int(size) for size in dc.read_header(args.dynamics)["shape"])
    correctness = args.correctness
    if args.compat is not None:
        from datacarto._stats import _compat_correctness

        correctness = _compat_correctness(args.compat, args.correctness, args.ddof)  # refuses --correctness argmax, --ddof 1
    resolved = resolve(args.labels, shape, task=args.task, correctness=correctness, threshold=args.threshold, epochs=epochs, ddof=args.ddof, source_name=args.dynamics)  # type: ignore[arg-type]
    if args.compat is not None and resolved.task == "multilabel":
        raise ValueError(f"--compat: {args.compat} reproduces a softmax classifier (multiclass or binary), found task 'multilabel' ({args.labels})")
    label_names = _label_names(args.label_names)
    if label_names is not None:
        expected = 2 if resolved.task == "binary" else shape[2]
        if len(label_names) != expected:
            each = "label" if resolved.task == "multilabel" else "class"
            raise ValueError(f"--label-names: expected {expected} names (one per {each} of {args.dynamics}), found {len(label_names)}")
    metadata = _metadata(args, n_examples=shape[1])
    options: Dict[str, Any] = dict(
        task=args.task,
        correctness=args.correctness,
        threshold=args.threshold,
        epochs=epochs,
        ddof=args.ddof,
        threads=args.threads,
        progress=_show_progress(args),
        compat=args.compat,
    )
    if (args.scheduler or args.workers) and shards is None:
        flag = "--scheduler" if args.scheduler else "--workers"
        raise ValueError(f"{flag}: runs shard files on a Dask cluster: add --shards examples or --shards epochs")
    if shards is not None and (args.scheduler or args.workers):
        dm = DataMap(_compute_on_dask(shards, args, options), metadata, label_names=label_names)
    elif shards is not None:
        dm = DataMap(dc.compute(shards, resolved.labels, shards=args.shards, **options), metadata, label_names=label_names)
    else:
        # the labels the pre-check loaded and validated: the file is not read a second time
        dm = DataMap.from_dynamics(args.dynamics, resolved.labels, metadata, label_names=label_names, **options)
    dm.write(output)
    start, stop = dm.epochs or (0, 0)
    print(f"{dm.n_examples} examples, {dm.task}, {dm.n_labels} label column(s), epochs {start}..{stop - 1}", file=sys.stderr)
    print(f"wrote {output}", file=sys.stderr)
    return 0


def _compute_on_dask(shards: List[str], args: argparse.Namespace, options: Dict[str, Any]) -> Any:
    """The statistics of shard files on a Dask cluster: the one at --scheduler, or a local one of --workers processes."""
    from datacarto._optional import require

    distributed = require("distributed", "dask", feature="--scheduler / --workers")
    import datacarto.dask as dcd

    compat = options.pop("compat")
    if compat is not None:  # the original's tie rule, which the cluster's tasks take as a correctness rule
        from datacarto._stats import _compat_correctness

        options["correctness"] = _compat_correctness(compat, options["correctness"], options["ddof"])
    options.pop("progress")
    if args.scheduler:
        with distributed.Client(args.scheduler) as client:
            return dcd.compute(shards, args.labels, shards=args.shards, client=client, **options)
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with distributed.Client(cluster) as client:
            return dcd.compute(shards, args.labels, shards=args.shards, client=client, **options)


def _cmd_regions(args: argparse.Namespace) -> int:
    target: Optional[str] = None
    if args.output:
        target = _output_target(args.output, _MAP_SUFFIXES, "--output")
    elif args.in_place:
        if Path(args.statistics).suffix.lower() not in _MAP_SUFFIXES:
            raise ValueError(f"--in-place: {args.statistics}: can rewrite a .parquet or .csv file only; write a copy with -o FILE.parquet")
        target = _output_target(args.statistics, _MAP_SUFFIXES, "--in-place")
    dm = _with_regions(_read_map(args.statistics), args, force=True)
    _print_counts(dm)
    if target is None:
        print("nothing written (-o FILE writes the map with its region column, --in-place rewrites the input)", file=sys.stderr)
        return 0
    dm.write(target)
    print(f"wrote {target}", file=sys.stderr)
    return 0


def _cmd_select(args: argparse.Namespace) -> int:
    output = _output_target(args.output, _TABLE_SUFFIXES, "--output") if args.output else None
    dm = _with_regions(_read_map(args.statistics), args, force=args.rule is not None)
    by = [c.strip() for c in args.by.split(",") if c.strip()] if args.by else None
    rows = dm.select(args.region, n=args.n, by=by, descending=args.descending if by else None, label=_label_arg(args.label))
    _emit_rows(rows, args, output)
    return 0


def _cmd_suspects(args: argparse.Namespace) -> int:
    output = _output_target(args.output, _TABLE_SUFFIXES, "--output") if args.output else None
    dm = _read_map(args.statistics)
    rows = dm.suspects(args.n, label=_label_arg(args.label), score=args.score)
    _emit_rows(rows, args, output)
    return 0


def _score_names() -> Tuple[str, ...]:
    return tuple(_SCORES)


def _cmd_label_issues(args: argparse.Namespace) -> int:
    import polars as pl

    output = _output_target(args.output, _TABLE_SUFFIXES, "--output") if args.output else None
    if args.dynamics:
        _require_regular_file(args.dynamics, "--dynamics")
    dm = _read_map(args.statistics, args.dynamics)
    issues = dm.label_issues()
    multilabel = dm.task == "multilabel"
    rows = dm.suspects(None)
    flags = issues.flags.reshape(-1)
    suggested = issues.suggested.reshape(-1)
    position = rows["example"].to_numpy() * (dm.n_labels if multilabel else 1) + (rows["label"].to_numpy() if multilabel else 0)
    rows = rows.with_columns(pl.Series("suggested", suggested[position], dtype=pl.Int64)).filter(pl.Series(flags[position]))
    rows = rows.with_columns(pl.int_range(1, rows.height + 1, dtype=pl.Int64).alias("rank"))
    units = dm.n_examples * (dm.n_labels if multilabel else 1)
    print(f"estimated wrong labels: {issues.n_issues} of {units} ({issues.n_issues / units:.1%}); flagged: {issues.n_flagged} (confident learning on the mean class probabilities)", file=sys.stderr)
    _emit_rows(rows, args, output)
    return 0


def _cmd_flip_labels(args: argparse.Namespace) -> int:
    import numpy as np

    from datacarto._atomic import atomic_write
    from datacarto.noise import flip_labels

    output = _output_target(args.output, (".npy",), "--output")
    flipped_path = _output_target(args.flipped or str(Path(output).with_name(Path(output).stem + "-flipped.npy")), (".npy",), "--flipped")
    _require_regular_file(args.labels, "labels")
    _require_npy_labels(args.labels)
    labels = np.load(args.labels, allow_pickle=False)
    confusion = None
    if args.confusion:
        _require_regular_file(args.confusion, "--confusion")
        confusion = np.load(args.confusion, allow_pickle=False)
    flips = flip_labels(labels, args.fraction, kind=args.kind, confusion=confusion, seed=args.seed)
    with atomic_write(output, "wb") as handle:
        np.save(handle, flips.labels)
    with atomic_write(flipped_path, "wb") as handle:
        np.save(handle, flips.flipped)
    print(f"flipped {flips.flipped.size} of {labels.shape[0]} labels ({args.kind}, seed {args.seed}): {output}, indices in {flipped_path}")
    return 0


def _cmd_noise_report(args: argparse.Namespace) -> int:
    import numpy as np

    from datacarto.noise import evaluate

    output = _output_target(args.output, _TABLE_SUFFIXES, "--output") if args.output else None
    _require_regular_file(args.flipped, "flipped")
    if args.dynamics:
        _require_regular_file(args.dynamics, "--dynamics")
    flipped = np.load(args.flipped, allow_pickle=False)
    dm = _read_map(args.statistics, args.dynamics)
    if isinstance(dm.dynamics, str) and not os.path.exists(dm.dynamics):
        dm = _without_dynamics(dm)  # the report then leaves label-issues out
    report = evaluate(dm, flipped, k=args.k)
    print(report)
    if output is not None:
        _write_table(report.to_polars(), output)
    return 0


def _write_table(table: Any, output: str) -> None:
    """Write a polars table atomically as .csv, .tsv, .parquet or JSON lines, by suffix."""
    from datacarto._atomic import atomic_path

    suffix = Path(output).suffix.lower()
    with atomic_path(output) as tmp:
        if suffix in (".csv", ".tsv"):
            table.write_csv(tmp, separator="\t" if suffix == ".tsv" else ",")
        elif suffix in (".parquet", ".pq"):
            table.write_parquet(tmp)
        else:
            table.write_ndjson(tmp)
    print(f"wrote {table.height} rows to {output}", file=sys.stderr)


def _without_dynamics(dm: Any) -> Any:
    """The map without its (missing) dynamics file: the report then skips label-issues."""
    from dataclasses import replace

    return type(dm)._build(dm.frame, replace(dm._info, dynamics=None))


def _cmd_plot(args: argparse.Namespace) -> int:
    from datacarto._atomic import atomic_path

    output = _output_target(args.output, (".png", ".svg", ".pdf"), "--output")
    examples = _parse_int_list(args.trajectories, "--trajectories") if args.trajectories else None
    if args.dynamics is not None:
        _require_regular_file(args.dynamics, "--dynamics")
    dm = _read_map(args.statistics, dynamics=args.dynamics)
    if examples is not None:
        figure = dm.plot_trajectories(examples, label=_label_arg(args.label))
    else:
        figure = dm.plot(label=_label_arg(args.label), color=args.color, density=args.density, title=args.title)
    # A bare matplotlib Figure (no pyplot): saving needs no display and leaves nothing open. The
    # temporary name ends in .tmp, so the format is given explicitly.
    with atomic_path(output) as tmp:
        figure.savefig(tmp, dpi=args.dpi, format=Path(output).suffix[1:].lower())
    print(f"wrote {output}", file=sys.stderr)
    return 0


def _cmd_html(args: argparse.Namespace) -> int:
    output = _output_target(args.output, (".html", ".htm"), "--output")
    dm = _read_map(args.statistics)
    written = dm.to_html(output, text_column=args.text_column, color=args.color, title=args.title)
    print(f"wrote {written}", file=sys.stderr)
    return 0


def _cmd_import_cartography(args: argparse.Namespace) -> int:
    import numpy as np

    from datacarto import importers, read_header
    from datacarto._atomic import atomic_write

    # Which files: the dynamics file (with its labels and guids) unless only --metrics is given.
    write_dynamics = args.output is not None or args.metrics is None
    if args.metrics is None:
        for flag, value in (("--burn-out", args.burn_out), ("--include-ci", args.include_ci or None)):
            if value is not None:
                raise ValueError(f"{flag}: applies to the metrics table only: add --metrics FILE.jsonl (the dynamics file keeps every epoch; compute --epochs :B uses the first B)")
    elif not write_dynamics:
        for flag, value in (("--labels", args.labels), ("--guids", args.guids), ("--dtype", args.dtype)):
            if value is not None:
                raise ValueError(f"{flag}: applies to the dynamics file, which --metrics alone does not write: add -o FILE.npy to write both")
    if args.missing == "average" and write_dynamics:
        why = "add --metrics FILE.jsonl and drop -o" if args.metrics is None else "use --missing drop, or write the metrics alone (without -o)"
        raise ValueError(f"--missing: average applies to --metrics only (a dynamics file holds every example in every epoch): {why}")

    # Every output checked before any work: suffix, folder, existing files, all different.
    targets: List[Tuple[str, str]] = []
    if write_dynamics:
        output = _output_target(args.output or _DEFAULT_IMPORT, (".npy",), "--output", overwrite=args.overwrite)
        stem = Path(output).with_suffix("")
        labels_path = args.labels or str(stem.with_name(stem.name + "-labels.npy"))
        guids_path = args.guids or str(stem.with_name(stem.name + "-guids.txt"))
        _output_target(labels_path, (".npy",), "--labels", overwrite=args.overwrite)
        _output_target(guids_path, None, "--guids", overwrite=args.overwrite)
        targets += [("--output", output), ("--labels", labels_path), ("--guids", guids_path)]
    if args.metrics is not None:
        targets.append(("--metrics", _output_target(args.metrics, (".jsonl", ".ndjson"), "--metrics", overwrite=args.overwrite)))
    if len({os.path.abspath(path) for _, path in targets}) < len(targets):
        flags = ", ".join(flag for flag, _ in targets)
        raise ValueError(f"{flags}: expected {len(targets)} different files, found {', '.join(path for _, path in targets)}")
    burn_out = args.burn_out or _DEFAULT_BURN_OUT
    if args.metrics is not None:
        epochs = len(importers.find_cartography_epochs(args.directory))  # names the folder when it holds no logs
        if args.include_ci and min(epochs, burn_out) < 2:
            found = f"--burn-out {burn_out}" if burn_out < epochs else f"{epochs} epoch in {args.directory}"
            raise ValueError(f"--include-ci: expected at least 2 epochs (the term var^2 / (E - 1)), found {found}")

    lenient = {name: value for name, value in (("guid_transform", args.guid_transform), ("gold_changes", args.gold_changes), ("missing", args.missing)) if value is not None}
    with _warnings_as_lines(args.flag_names, importers.CartographyWarning):
        if write_dynamics:
            result = importers.import_cartography(
                args.directory,
                output,
                dtype=args.dtype or "float32",
                id_field=args.id_field,
                overwrite=args.overwrite,
                progress=_show_progress(args),
                **lenient,
            )
            with atomic_write(labels_path, "wb") as handle:
                np.save(handle, np.asarray(result.labels))
            with atomic_write(guids_path, "w", encoding="utf-8") as handle:
                handle.write("".join(f"{g}\n" for g in result.guids))
            shape = read_header(output)["shape"]
            print(f"{shape[0]} epochs, {shape[1]} examples, {shape[2]} labels", file=sys.stderr)
            print(f"wrote {output}, {labels_path} and {guids_path}", file=sys.stderr)
        if args.metrics is not None:
            frame = importers.write_cartography_metrics(
                args.directory,
                args.metrics,
                burn_out=burn_out,
                include_ci=args.include_ci,
                overwrite=args.overwrite,
                id_field=args.id_field,
                progress=_show_progress(args),
                **lenient,
            )
            used = min(burn_out, epochs)
            print(f"metrics of {frame.height} examples over the first {used} of {epochs} epochs{' (include_ci)' if args.include_ci else ''}", file=sys.stderr)
            print(f"wrote {args.metrics}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from datacarto.demo import run_demo

    kwargs: Dict[str, Any] = {"seed": args.seed, "flip_fraction": args.flip_fraction, "progress": _show_progress(args)}
    if args.epochs is not None:
        kwargs["epochs"] = args.epochs
    run_demo(args.output, **kwargs)
    return 0


# ---------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _warnings_as_lines(flags: Dict[str, str], *categories: type) -> Iterator[None]:
    """Show every warning of ``categories`` (datacarto's: counts of the lenient cases, an output
    in a risky folder) as one ``datacarto: warning:`` line naming flags, each time it occurs,
    instead of Python's two-line format; other warnings are left to Python."""
    import warnings

    with warnings.catch_warnings():
        original = warnings.showwarning

        def show(message: Any, category: type, *rest: Any, **options: Any) -> None:
            if not issubclass(category, categories):
                original(message, category, *rest, **options)
                return
            print(f"{PROG}: warning: {_with_flag_names(str(message).splitlines()[0], flags)}", file=sys.stderr)

        for category in categories:
            warnings.simplefilter("always", category)
        warnings.showwarning = show
        yield


def _show_progress(args: argparse.Namespace) -> bool:
    """Progress bars on a terminal only, unless forced on (--progress) or off (-q)."""
    if args.progress is not None:
        return bool(args.progress)
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False


def _output_target(path: str, suffixes: Optional[Sequence[str]], flag: str, *, overwrite: bool = True) -> str:
    """Check an output path before any work: its suffix, its folder exists and is writable."""
    from datacarto._atomic import check_writable_target

    if suffixes is not None:
        _check_suffix(Path(path), suffixes, flag)
    return check_writable_target(path, overwrite=overwrite, what=flag)


def _require_regular_file(path: str, what: str) -> None:
    """Refuse a missing path, a folder, a FIFO or a device at once (a FIFO would block a reader).

    The file is opened non-blocking and the open file checked, so nothing can swap it between
    the check and the open.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} file not found") from None
    try:
        mode = os.fstat(fd).st_mode
    finally:
        os.close(fd)
    if not stat.S_ISREG(mode):
        kind = "folder" if stat.S_ISDIR(mode) else "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device or other special file"
        raise ValueError(f"{path}: {what}: expected a regular file, found a {kind}")


def _require_npy_labels(path: str) -> None:
    """A labels file must be a .npy of numbers; say so plainly (numpy would talk about pickles)."""
    import numpy as np
    from numpy.lib import format as npy_format

    _require_regular_file(path, "labels")
    expected = "expected a .npy file holding an integer array [N] or a 0/1 array [N, L]"
    with open(path, "rb") as handle:
        try:
            version = npy_format.read_magic(handle)
        except ValueError:
            raise ValueError(f"{path}: labels: {expected}, found a file that is not a .npy (it lacks the .npy magic bytes)") from None
        try:
            if version == (1, 0):
                _, _, dtype = npy_format.read_array_header_1_0(handle)
            elif version == (2, 0):
                _, _, dtype = npy_format.read_array_header_2_0(handle)
            else:
                return  # a newer format: numpy's own reader below judges it
        except ValueError as exc:
            raise ValueError(f"{path}: labels: {expected}, found an unreadable .npy header ({str(exc).splitlines()[0]})") from None
    if np.dtype(dtype).hasobject:
        raise ValueError(f"{path}: labels: {expected}, found dtype object (Python objects, not numbers)")


def _read_map(path: str, dynamics: Optional[str] = None) -> Any:
    from datacarto.datamap import DataMap

    _require_regular_file(path, "statistics")
    with _native_stderr_held():
        return DataMap.read(path, dynamics=dynamics)


@contextlib.contextmanager
def _native_stderr_held() -> Iterator[None]:
    """Hold what native code writes to file descriptor 2 while the body runs.

    polars prints a Rust panic message (with a backtrace under RUST_BACKTRACE) before it raises
    on some corrupted files; the error the CLI prints is one line. The held text is replayed
    when the body succeeds or under DATACARTO_DEBUG, dropped when it fails.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    succeeded = False
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
            succeeded = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if succeeded or _debug():
                held.seek(0)
                text = held.read().decode("utf-8", "replace")
                if text:
                    sys.stderr.write(text)
                    sys.stderr.flush()


def _metadata(args: argparse.Namespace, n_examples: int) -> Any:
    if args.text_column and not args.metadata:
        raise ValueError("--text-column: needs --metadata")
    if not args.metadata:
        return None
    metadata = _read_table(args.metadata, "--metadata")
    if metadata.height != n_examples:
        raise ValueError(f"--metadata: expected {n_examples} rows (one per example of {args.dynamics}), found {metadata.height} in {args.metadata}")
    if args.text_column:
        if args.text_column not in metadata.columns:
            raise ValueError(f"--text-column: expected a column of {args.metadata}, found {args.text_column!r}; columns: {', '.join(metadata.columns)}")
        if args.text_column != "text":
            if "text" in metadata.columns:
                raise ValueError(f"--text-column: {args.metadata} already has a 'text' column besides {args.text_column!r}")
            metadata = metadata.rename({args.text_column: "text"})
    return metadata


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


def _emit_rows(rows: Any, args: argparse.Namespace, output: Optional[str]) -> None:
    if args.columns:
        wanted = [c.strip() for c in args.columns.split(",") if c.strip()]
        missing = [c for c in wanted if c not in rows.columns]
        if missing:
            raise ValueError(f"--columns: unknown column(s) {', '.join(missing)}; columns: {', '.join(rows.columns)}")
        rows = rows.select(wanted)
    if output is not None:
        _write_table(rows, output)
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

    suffix = _check_suffix(Path(path), _TABLE_SUFFIXES, argument)
    _require_regular_file(path, argument)
    try:
        with _native_stderr_held():
            if suffix == ".csv":
                return pl.read_csv(path, infer_schema_length=10000)
            if suffix == ".tsv":
                return pl.read_csv(path, separator="\t", quote_char=None, infer_schema_length=10000)
            if suffix in (".parquet", ".pq"):
                return pl.read_parquet(path)
            return pl.read_ndjson(path)
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        detail = str(exc).splitlines()[0] if isinstance(exc, Exception) and str(exc).strip() else "the file looks corrupted"
        raise ValueError(f"{argument}: {path}: could not read it as {suffix[1:]} ({detail})") from exc


def _label_names(value: Optional[str]) -> Optional[List[str]]:
    if value is None:
        return None
    if os.path.exists(value):
        _require_regular_file(value, "--label-names")
        return [line.strip() for line in Path(value).read_text(encoding="utf-8").splitlines() if line.strip()]
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


def _check_suffix(path: Path, allowed: Sequence[str], argument: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise ValueError(f"{argument}: {path}: expected a file ending in {', '.join(allowed)}, found {suffix or 'no suffix'!r}")
    return suffix


# ---------------------------------------------------------------------- errors


def _debug() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "").strip() not in ("", "0")


def _with_flag_names(message: str, flags: Dict[str, str]) -> str:
    """Name flags, not Python arguments: ``threads: expected ...`` -> ``--threads: expected ...``.

    The library's messages name a field as ``name:`` at the start or after ``: ``; only those
    positions are rewritten, so a file name that contains the word is left alone.
    """
    for name, flag in sorted(flags.items(), key=lambda item: -len(item[0])):
        message = re.sub(rf"(^|: )({re.escape(name)})(?=: )", lambda m: m.group(1) + flag, message)
        message = re.sub(rf"\b{re.escape(name)}=True\b", flag, message)  # "pass overwrite=True"
        message = re.sub(rf"\b{re.escape(name)}='([^']*)'", lambda m: f"{flag} {m.group(1)}", message)  # "pass missing='drop'"
        message = re.sub(rf"\.with_{re.escape(name)}\((\w+)\)", lambda m: f"{flag} {m.group(1).upper()}", message)  # "use .with_dynamics(path)"
    return message


def _is_bad_input(exc: BaseException) -> bool:
    from datacarto._core import DatacartoError

    if isinstance(exc, (DatacartoError, ValueError, TypeError, OSError)):
        return True
    # polars errors reading a user's file (its classes are not imported just to test this)
    return isinstance(exc, Exception) and type(exc).__module__.split(".")[0] == "polars"


def _error_message(exc: BaseException) -> str:
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in message:
        message = f"{exc.filename}: {message}"
    elif isinstance(exc, OSError) and exc.strerror and exc.filename:
        message = f"{exc.filename}: {exc.strerror}"
    # one line: the first line of a multi-line message
    return message.splitlines()[0]


def _report(exc: BaseException, flags: Dict[str, str]) -> int:
    """Print one ``datacarto: error:`` line for ``exc`` and return the exit code."""
    from datacarto._optional import MissingDependencyError

    if _debug():
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    if isinstance(exc, MissingDependencyError):
        code, message = EXIT_FAILURE, _error_message(exc)
    elif isinstance(exc, ImportError):
        code, message = EXIT_FAILURE, f"a dependency is missing or broken: {_error_message(exc)}"
    elif _is_bad_input(exc):
        code, message = EXIT_BAD_INPUT, _with_flag_names(_error_message(exc), flags)
    else:
        # A bug here or in a dependency (a Rust panic included): one line, the traceback on request.
        hint = "" if _debug() else f" (set {DEBUG_VARIABLE}=1 for the traceback)"
        code, message = EXIT_FAILURE, f"unexpected {type(exc).__name__}: {_error_message(exc)}{hint}"
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``datacarto`` command line; returns the exit code.

    0 on success, 2 on bad input or a usage error, 1 on a missing dependency or an unexpected
    failure, 130 when interrupted (Ctrl-C).

    Example:
        >>> main(["suspects", "missing.parquet"])  # doctest: +SKIP
        datacarto: error: missing.parquet: statistics file not found
        2
    """
    flags: Dict[str, str] = {}
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(list(argv) if argv is not None else None)
        except SystemExit as exit_:  # --help, --version and usage errors (already printed)
            return int(exit_.code or 0) if not isinstance(exit_.code, str) else EXIT_BAD_INPUT
        flags = args.flag_names
        return int(args.handler(args))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)  # a progress bar clears its line on close
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader of stdout went away (`datacarto suspects s.parquet | head`): stop quietly
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except (SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: B036 - polars' PanicException derives from BaseException
        return _report(exc, flags)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
