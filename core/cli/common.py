"""What the command modules share: the runner from the flags, the progress bar, the explainer
knobs, the argument types and the flag groups several commands take."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..registry import DEFAULT_MODEL, model_names

if TYPE_CHECKING:
    from ..runner import Runner

#: The ``sub`` that each module's parser adders receive (``ArgumentParser.add_subparsers()``).
Subparsers = argparse._SubParsersAction
#: Adds one command's parser to ``sub``; each command module maps its command names to these.
AddParser = Callable[[Subparsers], None]


def _runner(args: argparse.Namespace) -> Runner:
    from ..runner import Runner

    return Runner(model=args.model, device=args.device, calibration=getattr(args, "calibration", None),
                  threshold=getattr(args, "threshold", None))  # fmt: skip


def split_methods(value: str | list[str]) -> list[str]:
    """The methods of a comma-separated ``--methods`` value, blanks dropped (a list, as
    ``methods_arg`` gives it, is kept)."""
    if isinstance(value, list):
        return value
    return [m.strip() for m in value.split(",") if m.strip()]


def methods_arg(value: str) -> list[str]:
    """``--methods``: comma-separated registered method names, checked when the arguments
    are parsed (exit 2 naming what is allowed), not when the run reaches them."""
    from ..registry import explainer_names

    names = split_methods(value)
    known = explainer_names()
    unknown = [m for m in names if m not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown method{'s' * (len(unknown) > 1)} {', '.join(repr(m) for m in unknown)}; choose from: {', '.join(known)}"
        )
    return names


def models_arg(value: str) -> list[str]:
    """``--models``: two or more comma-separated registered face models, each once, checked
    when the arguments are parsed."""
    from ..registry import model_names

    names = split_methods(value)
    known = model_names()
    unknown = [m for m in names if m not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown model{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}; choose from: {', '.join(known)}")
    if len(names) < 2 or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"give two or more different models, e.g. sface,dlib_resnet; got {value!r}")
    return names


def int_arg(low: int, what: str, high: int | None = None) -> Callable[[str], int]:
    """An argument type: a whole number in ``low..high`` (``what`` names it in the message),
    checked as a typed knob's flag is (``_number_arg``)."""
    return _number_arg({"type": "int", "low": low, "high": high, "default": None}, what)


def typed_knobs() -> dict[str, dict[str, Any]]:
    """Every typed knob of the registered explainers once (``core.registry.knob_table``);
    ``preset`` and ``seed`` are the commands' own flags."""
    from ..registry import knob_table

    return knob_table(skip=("preset", "seed"))


def _number_arg(k: dict[str, Any], what: str) -> Callable[[str], Any]:
    """A number (or comma-separated numbers, for a tuple knob) within the knob's range."""
    whole = "int" in k["type"]
    many = k["type"].startswith("tuple")
    lo, hi = k["low"], k["high"]
    allowed = f"{lo:g} to {hi:g}" if lo is not None and hi is not None else f"at least {lo:g}" if lo is not None else f"at most {hi:g}"

    def one(value: str) -> float:
        try:
            v: float = int(value) if whole else float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be {'a whole number' if whole else 'a number'}, got {value!r}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{what} must be {allowed}, got {value}")
        return v

    def parse(value: str) -> Any:
        if not many:
            return one(value)
        parts = [v.strip() for v in value.split(",") if v.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"give at least one value ({allowed}), e.g. {','.join(str(d) for d in k['default'] or [])}")
        return tuple(one(v) for v in parts)

    return parse


def knob_flags(sp: argparse.ArgumentParser, skip: tuple[str, ...] = (), rename: dict[str, str] | None = None) -> None:
    """One flag per typed knob (``--patch-sizes``, ``--region-size``, ...), generated from the
    knob dataclasses: its type, range or choices (checked when the arguments are parsed) and
    help; default None, so the preset's value holds unless the flag is given. ``skip``: knobs
    the command has no flag for; ``rename``: knobs whose usual flag the command uses for
    something else, with the flag they get instead (``faithfulness``: ``{"fill": "map-fill"}``,
    its ``--fill`` is the curves' hiding value). Also ``--gallery`` (SDD's competitors, a path
    rather than a typed knob)."""
    rename = rename or {}
    sp.add_argument("--gallery", help="SDD: a gallery folder or identities CSV of competitor faces")
    typed = {name: k for name, k in typed_knobs().items() if name not in skip}
    dests = {rename.get(name, name).replace("-", "_"): name for name in typed}
    sp.set_defaults(knob_names={"gallery": "gallery", **dests})  # {attribute: knob}, what _knobs reads
    for dest, name in dests.items():
        k = typed[name]
        flag = "--" + dest.replace("_", "-")
        default = ",".join(str(v) for v in k["default"]) if isinstance(k["default"], list) else k["default"]
        families = ", ".join(k["methods"]) if len(k["methods"]) <= 3 else f"{k['methods'][0]} ... ({len(k['methods'])} methods)"
        text = f"{k['help']} (default: {default}; {families})".replace("%", "%%")
        if k["choices"] is not None:
            sp.add_argument(flag, dest=dest, choices=[str(c) for c in k["choices"]], help=text)
        elif k["low"] is not None or k["high"] is not None:
            what = "each value of " + flag if k["type"].startswith("tuple") else flag
            sp.add_argument(flag, dest=dest, type=_number_arg(k, what), metavar=name.upper(), help=text)
        elif "float" in k["type"]:  # a hiding value: a name, a grey level or an RGB triple
            sp.add_argument(flag, dest=dest, type=_fill_arg, metavar="FILL", help=text)
        else:
            sp.add_argument(flag, dest=dest, help=text)


def _knobs(args: argparse.Namespace) -> dict:
    knobs = {"preset": args.preset, "batch_size": args.batch_size, "seed": args.seed}
    for dest, name in getattr(args, "knob_names", {}).items():
        v = getattr(args, dest, None)
        if v is not None:
            knobs[name] = v
    return {k: v for k, v in knobs.items() if v is not None}


@contextlib.contextmanager
def progress_bar(desc: str, quiet: bool = False) -> Iterator[Callable[[float, str], None]]:
    """A ``progress(fraction, message)`` callback drawn as a tqdm bar on stderr (nothing when
    ``quiet``), closed when the block ends, however it ends."""
    if quiet:
        yield lambda frac, message: None
        return
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=desc, bar_format="{l_bar}{bar}| {elapsed}<{remaining}", file=sys.stderr)

    def progress(frac: float, message: str) -> None:
        bar.n = int(frac * 1000)
        bar.set_description(message[:40], refresh=False)
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()


def _fill_arg(value: str) -> str | float:
    """A hiding value: a name (black, grey, white, noise, mean) or a grey level."""
    from ..explainers.perturb import check_fill

    fill: str | float = value
    with contextlib.suppress(ValueError):
        fill = float(value)
    try:
        return check_fill(fill)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _steps_arg(value: str) -> int:
    n = int(value)
    if n < 2:
        raise argparse.ArgumentTypeError(f"at least 2 steps are needed (0 and 100 %), got {n}")
    return n


def _share_arg(value: str) -> float:
    f = float(value)
    if not 0.0 < f <= 1.0:
        raise argparse.ArgumentTypeError(f"the share must be in (0, 1], got {f}")
    return f


def model_args(sp: argparse.ArgumentParser) -> None:
    """``--model`` and ``--device``."""
    sp.add_argument("--model", default=DEFAULT_MODEL, choices=model_names(), help="face model (default: %(default)s)")
    sp.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: %(default)s)")
