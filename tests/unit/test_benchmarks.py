"""The benchmark runner's machinery (table, JSON, not-run rows) on trivial benchmarks: no timing assertions."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest

# benchmarks/ is a top-level folder of the repository, not part of the installed fastml package
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import benchmarks.__main__ as bench_main
from benchmarks.core import Context, Row, not_run, render_table, results_path, run_child, run_groups


def _trivial(ctx: Context) -> list[Row]:
    total = sum(range(1000))
    return [Row("trivial", "sum", {"value": total, "ratio": 0.5}),
            not_run("trivial", "missing tool", "frobnicator not installed")]


def _broken(ctx: Context) -> list[Row]:
    raise RuntimeError("this group is broken\non two lines")


def test_groups_run_and_a_broken_group_becomes_a_not_run_row(tmp_path: Path) -> None:
    ctx = Context(quick=True, workdir=tmp_path, log=lambda m: None)
    rows, walls = run_groups({"trivial": _trivial, "broken": _broken}, ctx)
    assert [r.item for r in rows] == ["sum", "missing tool", "(group)"]
    assert rows[0].ran and rows[0].values["value"] == 499500
    assert rows[1].status == "not run: frobnicator not installed"
    assert rows[2].status.startswith("not run: RuntimeError: this group is broken on two lines")
    assert set(walls) == {"trivial", "broken"}
    assert (tmp_path / "broken.traceback.txt").is_file()


def test_table_shows_values_and_not_run_reasons() -> None:
    table = render_table(_trivial(Context(quick=True, workdir=Path("."))))
    lines = table.splitlines()
    assert lines[0] == "[trivial]"
    assert lines[1].split() == ["item", "value", "ratio"]
    assert lines[3].split() == ["sum", "499,500", "0.5"]
    assert "missing tool" in lines[4] and "not run: frobnicator not installed" in lines[4]


def test_results_path_never_overwrites(tmp_path: Path) -> None:
    now = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    first = results_path(tmp_path, quick=False, now=now)
    assert first.name == "2026-01-02.json"
    first.write_text("{}")
    assert results_path(tmp_path, quick=False, now=now).name == "2026-01-02-2.json"
    assert results_path(tmp_path, quick=True, now=now).name == "2026-01-02-quick.json"


def test_main_writes_json_with_machine_info_and_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bench_main, "all_groups", lambda: {"trivial": _trivial})
    assert bench_main.main(["run", "--quick", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "[trivial]" in out and "not run: frobnicator not installed" in out
    files = list(tmp_path.glob("*-quick.json"))
    assert len(files) == 1
    doc = json.loads(files[0].read_text())
    assert doc["mode"] == "quick"
    for key in ("cpu_model", "cpu_cores", "ram_gib", "python", "packages"):
        assert key in doc["machine"]
    assert "numpy" in doc["machine"]["packages"]
    assert len(doc["load_average"]["start"]) == 3
    assert [r["item"] for r in doc["rows"]] == ["sum", "missing tool"]
    assert doc["rows"][1]["status"].startswith("not run:")


def test_only_rejects_unknown_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_main, "all_groups", lambda: {"trivial": _trivial})
    with pytest.raises(SystemExit):
        bench_main.main(["run", "--only", "nonsense"])


def test_run_child_reports_exit_code_output_and_rss() -> None:
    res = run_child([sys.executable, "-c", "import sys; b = bytearray(50 * 2**20); print('hi'); sys.exit(3)"])
    assert res.returncode == 3
    assert res.stdout.strip() == "hi"
    assert res.max_rss_mib >= 50  # it touched a 50 MiB buffer


def test_run_child_rss_is_the_childs_not_the_parents() -> None:
    ballast = bytearray(300 * 2**20)  # this process now holds 300 MiB more than the child will
    ballast[::4096] = b"x" * len(ballast[::4096])
    res = run_child([sys.executable, "-c", "pass"])
    assert res.returncode == 0
    assert res.max_rss_mib is not None and res.max_rss_mib < 200
    del ballast


def test_front_points_spread_in_log_ebops() -> None:
    from benchmarks.firmware_quality import spread_indices

    ebops = [1000.0, 100_000.0, 10_000.0, 9_000.0, 1_100.0]
    assert spread_indices(ebops, 3) == [1, 2, 0]
    assert sorted(spread_indices(ebops, 10)) == [0, 1, 2, 3, 4]


def test_training_front_comparison_picks_by_validation_at_or_under_each_level() -> None:
    from benchmarks.training_quality import at_level

    front = [{"val_accuracy": 0.60, "ebops": 800}, {"val_accuracy": 0.66, "ebops": 2_000},
             {"val_accuracy": 0.65, "ebops": 2_500}, {"val_accuracy": 0.68, "ebops": 9_000}]
    assert at_level(front, 500) is None  # the front does not reach down that far
    assert at_level(front, 1_000)["ebops"] == 800
    assert at_level(front, 3_000)["ebops"] == 2_000  # 2 500 is larger and less accurate: never preferred
    assert at_level(front, 1e9)["ebops"] == 9_000


def test_paired_difference_counts_only_the_events_the_two_classifiers_disagree_on() -> None:
    import numpy as np

    from benchmarks.training_quality import paired_difference

    a = np.array([1, 1, 1, 0, 0, 1, 0, 1] * 500, bool)
    assert paired_difference(a, a.copy()) == (0.0, 0.0)  # identical decisions: no difference, no spread
    b = a.copy()
    b[:8] = True  # b also gets events 3, 4 and 6 right: 3 of 4 000 events
    diff, se = paired_difference(a, b)
    assert diff == pytest.approx(-100 * 3 / 4000)
    d = np.r_[np.zeros(3997), -np.ones(3)]
    assert se == pytest.approx(100 * d.std(ddof=1) / np.sqrt(4000))

