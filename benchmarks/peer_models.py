"""Models from the field: every recipe of the peer corpus (``../shared/peer-models/``) through ``fastml build``.

Each recipe runs as a user runs it, ``fastml build <recipe> --quick --no-progress`` in a child process (``--quick``
only shortens training; an imported model is built as it is and verified on at least 1 000 events). The
outcome is read from the exit code, the error line and the project's ``report.json``: built bit-exact (levels,
samples, mismatches, float vs as-built accuracy, the float edges fastml made explicit) or refused (the one
line fastml printed). ``python -m benchmarks run --only peer_models`` writes the table the README's "Models
from the field" comes from; ``tests/integration/test_peer_models.py`` asserts each outcome.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .core import REPO_ROOT, Context, Row, not_run, run_child

_STAGE_LOG = re.compile(r"^\[[\w.]+\] ")
#: The corpus, beside the project (CI has it; a clone elsewhere may not).
PEER_DIR = REPO_ROOT.parent / "shared" / "peer-models"


#: recipe -> (keys changed for the suite and the table, why). The table says so beside the recipe.
OVERRIDES: dict[str, tuple[dict[str, dict[str, Any]], str]] = {
    "bdt_cms_l1_hgcal_multiclass/recipe.yaml": (
        {"firmware": {"conifer_backend": "cpp"}},
        "conifer's cpp emulation: the xilinxhls C-simulation of its 180 unrolled trees compiles for 34 min here "
        "(g++ -O3, conifer's own command; 9 min at -O0), the cpp emulation in seconds; same file, precision and "
        "reference"),
}


#: Where each corpus folder's model was published (details, commits and licences: the corpus README).
SOURCES = {
    "bdt_cms_l1_hgcal_multiclass": "cms-data L1Trigger-Phase2L1ParticleFlow",
    "bdt_cms_l1_trackquality": "cms-data L1Trigger-TrackTrigger",
    "brevitas_tfc_2w2a": "QONNX model zoo (FINN BNN-PYNQ)",
    "brevitas_unsw_nb15": "QONNX model zoo (FINN)",
    "float_keras_3layer": "hls4ml example-models",
    "float_keras_3layer_bn": "hls4ml example-models",
    "hgq1_jet_classifier": "hls4ml example-models",
    "onnx_float_pytorch_3layer": "hls4ml example-models",
    "qkeras_3layer": "hls4ml example-models",
    "qkeras_deepsets_l1jetid": "fastmachinelearning/l1-jet-id",
    "qkeras_v3_3layer": "hls4ml example-models",
    "qonnx_jettagging": "QONNX model zoo",
}


def corpus_recipes(peer_dir: Path = PEER_DIR) -> list[Path]:
    """Every recipe of the corpus (``<folder>/recipe*.yaml``), in a stable order."""
    return sorted(peer_dir.glob("*/recipe*.yaml"))


def recipe_id(recipe: Path) -> str:
    """``<folder>/<recipe file>``: how tests and tables name a corpus recipe."""
    return f"{recipe.parent.name}/{recipe.name}"


@dataclass
class PeerOutcome:
    """What ``fastml build`` did with one corpus recipe."""

    recipe: str
    returncode: int
    wall_s: float
    stderr: str
    report: dict[str, Any] | None = None
    project: Path | None = None
    levels: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def built(self) -> bool:
        return self.returncode == 0 and self.report is not None

    @property
    def error_lines(self) -> list[str]:
        """What fastml printed on stderr besides its stage log (``[stage] ...``) and third-party warnings."""
        return [ln for ln in self.stderr.splitlines()
                if ln.strip() and not _STAGE_LOG.match(ln) and "warning" not in ln.lower()]

    @property
    def message(self) -> str:
        lines = self.error_lines
        return lines[-1].strip() if lines else ""

    def accuracy(self, which: str) -> float | None:
        return ((self.report or {}).get("accuracy") or {}).get(which)

    def save(self, folder: Path) -> Path:
        """This outcome as ``<folder>/<folder__recipe>.json`` (``python -m benchmarks.peer_models table`` reads it)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (self.recipe.replace("/", "__") + ".json")
        path.write_text(json.dumps({"recipe": self.recipe, "returncode": self.returncode, "wall_s": self.wall_s,
                                    "stderr": self.stderr, "report": self.report, "levels": self.levels}))
        return path

    @classmethod
    def load(cls, path: Path) -> PeerOutcome:
        d = json.loads(path.read_text())
        return cls(d["recipe"], d["returncode"], d["wall_s"], d["stderr"], d["report"], None, d["levels"])

    @property
    def float_edges(self) -> list[dict[str, Any]]:
        return list((((self.report or {}).get("model") or {}).get("selection") or {}).get("float_edges") or [])


def with_overrides(recipe: Path, overrides: dict[str, dict[str, Any]], folder: Path) -> Path:
    """A copy of ``recipe`` in ``folder`` with ``overrides`` ({section: {key: value}}) applied, its file paths made
    absolute (they are relative to the recipe's own folder)."""
    raw = yaml.safe_load(recipe.read_text())
    source = str(raw.get("data", {}).get("source", ""))
    if source and ":" not in source.split("/")[0]:  # a file, not builtin:/openml:
        raw["data"]["source"] = str((recipe.parent / source).resolve())
    for key in ("path", "load"):
        if key in raw.get("model", {}):
            raw["model"][key] = str((recipe.parent / raw["model"][key]).resolve())
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / recipe.name
    copy.write_text(yaml.safe_dump(raw, sort_keys=False))
    return copy


def run_recipe(recipe: Path, output_dir: Path, timeout_s: float = 1800, quick: bool = True,
               overrides: dict[str, dict[str, Any]] | None = None) -> PeerOutcome:
    """``fastml build <recipe>`` in a child process, its project under ``output_dir`` (``overrides``: built from a
    copy of the recipe with these keys changed)."""
    built_from = with_overrides(recipe, overrides, output_dir / ".recipe") if overrides else recipe
    cmd = [sys.executable, "-m", "fastml", "build", str(built_from), "--no-progress", "--output-dir", str(output_dir)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    child = run_child(cmd + (["--quick"] if quick else []), cwd=REPO_ROOT, env=env, timeout_s=timeout_s)
    outcome = PeerOutcome(recipe_id(recipe), child.returncode, child.wall_s, child.stderr)
    reports = sorted(output_dir.glob("*/report.json"))
    if child.returncode == 0 and reports:
        outcome.report = json.loads(reports[0].read_text())
        outcome.project = reports[0].parent
        outcome.levels = {level: {"samples": int(v["samples"]), "mismatches": int(v["mismatches"])}
                          for level, v in (outcome.report.get("verification") or {}).items()}
    return outcome


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def outcome_cell(o: PeerOutcome) -> str:
    """The table's outcome: bit-exact levels with samples, or the refusal's line."""
    if o.built:
        levels = ", ".join(f"{level} {v['mismatches']}/{v['samples']}" for level, v in o.levels.items())
        return f"built, bit-exact ({levels} mismatches/events)"
    # the table names the recipe: leave out "fastml: error: <model path>: "
    why = re.sub(r"^fastml: error: (\S+: )?", "", o.message)
    return f"refused: {why}" if o.returncode == 2 else f"FAILED (exit {o.returncode}): {why}"


def markdown_table(outcomes: list[PeerOutcome], sources: dict[str, str] | None = None) -> str:
    """The README's "Models from the field" table."""
    lines = ["| recipe | source | kind | outcome | float → as built | build (s) |", "|---|---|---|---|---|---:|"]
    for o in outcomes:
        kind = ((o.report or {}).get("model") or {}).get("kind", "—")
        acc = (f"{_pct(o.accuracy('float'))} → {_pct(o.accuracy('quantized'))}" if o.float_edges
               else "no float edge")
        changed = OVERRIDES.get(o.recipe, (None, ""))[1]
        lines.append(f"| `{o.recipe}` | {(sources or {}).get(o.recipe.split('/')[0], '')} | {kind} | "
                     f"{outcome_cell(o)}{f' (with {changed})' if changed else ''} | {acc if o.built else '—'} | "
                     f"{o.wall_s:.0f} |")
    return "\n".join(lines)


def peer_group(ctx: Context) -> list[Row]:
    """One row per corpus recipe: outcome, levels, float/as-built accuracy, wall time of the whole build."""
    recipes = corpus_recipes()
    if not recipes:
        return [not_run("peer_models", "corpus", f"{PEER_DIR} is absent")]
    rows, outcomes = [], []
    for recipe in recipes:
        out = ctx.workdir / "peer" / recipe_id(recipe).replace("/", "__")
        o = run_recipe(recipe, out, overrides=OVERRIDES.get(recipe_id(recipe), (None, ""))[0])
        ctx.log(f"peer {o.recipe}: {outcome_cell(o)} ({o.wall_s:.0f} s)")
        outcomes.append(o)
        mismatches = sum(v["mismatches"] for v in o.levels.values()) if o.built else None
        rows.append(Row("peer_models", o.recipe, {
            "outcome": "built" if o.built else ("refused" if o.returncode == 2 else f"failed ({o.returncode})"),
            "levels": ",".join(o.levels) or None, "mismatches": mismatches,
            "float_acc": o.accuracy("float"), "built_acc": o.accuracy("quantized"),
            "float_edges": len(o.float_edges), "wall_s": round(o.wall_s, 1)}, note=outcome_cell(o)))
    ctx.log("README table (Models from the field):\n" + markdown_table(outcomes, SOURCES))
    return rows


if __name__ == "__main__":  # python -m benchmarks.peer_models table DIR: the README table from saved outcomes
    if len(sys.argv) != 3 or sys.argv[1] != "table":
        sys.exit("usage: python -m benchmarks.peer_models table DIR (outcomes saved by the tests with "
                 "FASTML_PEER_RESULTS=DIR)")
    saved = sorted(Path(sys.argv[2]).glob("*.json"))
    print(markdown_table([PeerOutcome.load(p) for p in saved], SOURCES))
